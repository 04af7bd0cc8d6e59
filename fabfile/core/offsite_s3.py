"""The S3 off-site back end (offsite_backend.Backend), on botocore (boto3's core; boto3 itself
would add about 0.4 s of imports to every run): the one module that makes an S3 client.
Keys are the back end's paths: ``<offsite_dir>/<host>/<kind>/<id>/<file>``.

Verified without reading back: each object (or multipart part) carries x-amz-checksum-sha256
and Content-MD5 of its bytes, so the server refuses what did not arrive intact (servers that
ignore the SHA-256 header, like rclone's, still check Content-MD5). S3 writes are atomic: an
object appears under its key complete or not at all. Large files go multipart, one part in
memory at a time; a failed multipart upload is aborted. With backup.offsite_retain_days,
every upload carries a COMPLIANCE retention date, and the bucket must have Object Lock (asked
once, before the first upload). A versioned bucket (Object Lock implies it) keeps what a plain
DELETE removes as a noncurrent version, so a backup is deleted version by version.
"""

from __future__ import annotations

import base64
import contextlib
import email.utils
import hashlib
import posixpath
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, BinaryIO

import botocore.auth
import botocore.exceptions as bce
import botocore.handlers
import botocore.session
from botocore.config import Config

from . import output
from .errors import StoreError, TransferError, UsageError
from .manifest import MANIFEST_NAME
from .model import BackupSettings
from .offsite_backend import CHUNK, MAX_TRANSFERS, RemoteBackup, Upload
from .transport import IDLE_TIMEOUT

PART = 16 << 20  # multipart above this; also the in-memory part size
PAGE = 1000  # keys per listing page (the S3 maximum)
# Error codes that mean the request can never work as configured: said so, not retried.
CREDENTIALS = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403"}
SKEW = {"RequestTimeTooSkewed", "RequestExpired"}
SKEW_LIMIT = timedelta(minutes=15)
NO_BUCKET = {"NoSuchBucket", "404"}
# What a server says when the bucket has no Object Lock, or it does not know Object Lock.
NO_LOCK = {"ObjectLockConfigurationNotFoundError", "NotImplemented", "InvalidRequest"}
# NoSuchUpload: rclone's answer to listing multipart uploads when there are none.
NOT_FOUND = {"NoSuchKey", "404", "NotFound", "NoSuchUpload"}
CONNECTION = (bce.EndpointConnectionError, bce.ConnectionClosedError, bce.ReadTimeoutError,
              bce.ConnectTimeoutError, bce.ResponseStreamingError)  # fmt: skip


class S3Backend:
    """One bucket on one endpoint; a client from botocore's (boto3's) credential chain."""

    def __init__(self, settings: BackupSettings, client: Any) -> None:
        self.client, self.bucket = client, settings.offsite_s3_bucket
        self.endpoint = settings.offsite_s3_endpoint
        self.name = f"s3://{self.bucket}"
        self.retain_days = settings.offsite_retain_days
        self._alive = True
        self._locking: bool | None = None  # the bucket has Object Lock (asked once)
        self._versioned: bool | None = None  # the bucket keeps versions (asked once)

    @classmethod
    @contextlib.contextmanager
    def open(cls, settings: BackupSettings) -> Iterator[S3Backend]:
        session = botocore.session.Session()
        if session.get_credentials() is None:
            raise UsageError(
                f"s3://{settings.offsite_s3_bucket}: no S3 credentials; set AWS_ACCESS_KEY_ID "
                "and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE (and AWS_SHARED_CREDENTIALS_FILE)"
            )
        client = session.create_client(
            "s3",
            endpoint_url=settings.offsite_s3_endpoint,
            region_name=settings.offsite_s3_region,
            config=Config(
                s3={"addressing_style": "path"},
                connect_timeout=10,
                read_timeout=IDLE_TIMEOUT,  # a dead link fails, not hangs
                retries={"mode": "standard", "max_attempts": 3},
                # We send our own checksums (below); no CRC32 trailers some servers reject.
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
                # One connection per transfer at once (workers share this client).
                max_pool_connections=MAX_TRANSFERS,
            ),
        )
        # No `Expect: 100-continue` (botocore's default on every PUT): waiting for the
        # server's go-ahead costs a round trip per upload, and a refusal costs at most one
        # part's bytes (16 MiB) sent for nothing; HeadBucket has checked the keys already.
        client.meta.events.unregister("before-call.s3", botocore.handlers.add_expect_header)
        backend = cls(settings, client)
        backend._call("head_bucket", "", Bucket=backend.bucket)  # a clear error up front
        try:
            yield backend
        finally:
            client.close()

    # -- errors --

    def _call(
        self, op: str, key: str, *, missing_ok: bool | set[str] = False, **kwargs: Any
    ) -> Any:
        """One S3 request; its failure as a one-line ZachotError (missing_ok: None if the
        key is not there, or the error code is one of the set given)."""
        absent = NOT_FOUND if missing_ok is True else missing_ok or set()
        try:
            return getattr(self.client, op)(**kwargs)
        except bce.ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) in absent:
                return None
            raise self._refused(key, exc) from None
        except CONNECTION as exc:
            self._alive = False
            raise TransferError(
                f"{self.name}: {key or 'bucket'}: cannot reach {self.endpoint} "
                f"({type(exc).__name__}); check the endpoint and the network, then run it again"
            ) from None
        except bce.BotoCoreError as exc:
            raise TransferError(f"{self.name}: {key or 'bucket'}: {exc}") from None

    def _refused(self, key: str, exc: bce.ClientError) -> Exception:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        where = f"{self.name}: {key or 'bucket'}"
        if code in CREDENTIALS:
            return UsageError(
                f"{where}: the S3 credentials were refused ({code}); check AWS_ACCESS_KEY_ID / "
                "AWS_SECRET_ACCESS_KEY or the profile, and the bucket's policy"
            )
        if code in SKEW or _skewed(exc):
            return TransferError(
                f"{where}: the server refused the request's time ({code}); "
                "set this machine's clock right (NTP) and run it again"
            )
        if code in NO_BUCKET and not key:
            return UsageError(
                f"{where}: no bucket {self.bucket} at {self.endpoint}; create it "
                "or fix backup.offsite_s3_bucket"
            )
        if code == "BadDigest":
            return TransferError(f"{where}: the server refused it: checksum differs after upload")
        return TransferError(
            f"{where}: {code or 'error'}: {exc.response.get('Error', {}).get('Message', '')}"
        )

    def alive(self) -> bool:
        return self._alive

    @contextlib.contextmanager
    def workers(self, n: int) -> Iterator[list[S3Backend]]:
        """A botocore client is thread-safe: every worker shares this one."""
        yield [self] * max(1, min(n, MAX_TRANSFERS))

    # -- listing: paginated, round trips grow with pages, not backups --

    def _list(self, path: str, delimiter: bool) -> Iterator[dict[str, Any]]:
        prefix = path.rstrip("/") + "/"
        token: dict[str, str] = {}
        while True:
            kwargs = {"Bucket": self.bucket, "Prefix": prefix, "MaxKeys": PAGE, **token}
            page = self._call("list_objects_v2", path, **kwargs, **(
                {"Delimiter": "/"} if delimiter else {}))  # fmt: skip
            yield page
            if not page.get("IsTruncated"):
                return
            token = {"ContinuationToken": page["NextContinuationToken"]}

    def list_dirs(self, path: str) -> list[str]:
        names = [
            p["Prefix"].rstrip("/").rsplit("/", 1)[-1]
            for page in self._list(path, delimiter=True)
            for p in page.get("CommonPrefixes", ())
        ]
        return sorted(names)

    def probe(self, path: str) -> RemoteBackup | None:
        files = {
            o["Key"].rsplit("/", 1)[-1]: int(o["Size"])
            for page in self._list(path, delimiter=True)
            for o in page.get("Contents", ())
        }
        return RemoteBackup(dict(sorted(files.items()))) if files else None

    def makedirs(self, path: str) -> None:
        pass  # no directories in a bucket

    # -- upload: checksummed, atomic, multipart for large files --

    def upload(self, item: Upload, directory: str, label: str) -> None:
        key = posixpath.join(directory, item.name)
        try:
            self._upload(item, key, label)
        except OSError as exc:  # the local file (a yanked disk): nothing is under `key`
            why = exc.strerror or str(exc) or type(exc).__name__
            raise TransferError(f"{item.local}: cannot read it ({why}); not sent") from None

    def _upload(self, item: Upload, key: str, label: str) -> None:
        lock = self._lock_args()
        with item.open() as src, output.progress(label, item.size) as advance:
            if item.size <= PART:
                data = src.read(PART + 1)
                self._check_local(item, hashlib.sha256(data).hexdigest(), len(data))
                self._call("put_object", key, Bucket=self.bucket, Key=key, Body=data,
                           **_checksums(data), **lock)  # fmt: skip
                advance(len(data))
            else:
                self._multipart(item, key, src, advance, lock)

    def _multipart(
        self, item: Upload, key: str, src: BinaryIO, advance: Any, lock: dict[str, Any]
    ) -> None:
        """Parts of PART bytes, each checksummed; the whole is hashed on the way and must
        match the manifest before it is completed. Any failure aborts the upload, so no
        parts are left behind (billed, invisible) and nothing appears under the key."""
        self._abort_stale(key, exact=True)  # a run cut off before it could abort
        started = self._call("create_multipart_upload", key, Bucket=self.bucket, Key=key,
                             ChecksumAlgorithm="SHA256", **lock)  # fmt: skip
        upload_id = started["UploadId"]
        try:
            whole, parts, sent = hashlib.sha256(), [], 0
            while data := src.read(PART):
                whole.update(data)
                number = len(parts) + 1
                answer = self._call("upload_part", key, Bucket=self.bucket, Key=key,
                                    UploadId=upload_id, PartNumber=number, Body=data,
                                    **_checksums(data))  # fmt: skip
                part = {"PartNumber": number, "ETag": answer["ETag"]}
                if answer.get("ChecksumSHA256"):
                    part["ChecksumSHA256"] = answer["ChecksumSHA256"]
                parts.append(part)
                sent += len(data)
                advance(len(data))
            self._check_local(item, whole.hexdigest(), sent)
            self._call("complete_multipart_upload", key, Bucket=self.bucket, Key=key,
                       UploadId=upload_id, MultipartUpload={"Parts": parts})  # fmt: skip
        except BaseException:
            with contextlib.suppress(Exception):  # gone already (a refused part ends it)
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            raise

    def _abort_stale(self, prefix: str, *, exact: bool = False) -> None:
        """Abort the multipart uploads under `prefix` (exact: for that key only) that a run
        left when the link died before its abort could reach the server: no invisible,
        billed parts stay behind once the same file is sent again or its backup deleted."""
        answer = self._call("list_multipart_uploads", prefix, missing_ok=True,
                            Bucket=self.bucket, Prefix=prefix)  # fmt: skip
        for upload in (answer or {}).get("Uploads", ()):
            if not exact or upload["Key"] == prefix:
                self._call("abort_multipart_upload", upload["Key"], missing_ok=True,
                           Bucket=self.bucket, Key=upload["Key"],
                           UploadId=upload["UploadId"])  # fmt: skip

    def _check_local(self, item: Upload, sha256: str, size: int) -> None:
        if sha256 != item.sha256 or size != item.size:
            raise StoreError(
                f"{item.local}: does not match its manifest; the store is damaged "
                "(run fab backup.verify); not sent"
            )

    def _lock_args(self) -> dict[str, Any]:
        if not self.retain_days:
            return {}
        self._require_lock()
        until = _now() + timedelta(days=self.retain_days)
        return {"ObjectLockMode": "COMPLIANCE", "ObjectLockRetainUntilDate": until}

    def _require_lock(self) -> None:
        """Retention asked for on a bucket without Object Lock is refused, not ignored: a
        server that keeps the date without enforcing it (rclone) would promise nothing."""
        if self._locking is None:
            answer = self._call("get_object_lock_configuration", "", missing_ok=NO_LOCK,
                                Bucket=self.bucket)  # fmt: skip
            config = (answer or {}).get("ObjectLockConfiguration", {})
            self._locking = config.get("ObjectLockEnabled") == "Enabled"
        if not self._locking:
            raise UsageError(
                f"{self.name}: backup.offsite_retain_days is {self.retain_days} but bucket "
                f"{self.bucket} has no Object Lock; create the bucket with Object Lock "
                "enabled, or set backup.offsite_retain_days: 0"
            )

    def locked_until(self, directory: str) -> str | None:
        """The manifest's retention date, while it lasts (one HEAD; only with retention).
        Without a manifest (an interrupted upload), that of the directory's first file."""
        if not self.retain_days:
            return None
        key = posixpath.join(directory, MANIFEST_NAME)
        head = self._call("head_object", key, missing_ok=True, Bucket=self.bucket, Key=key)
        if head is None:
            page = self._call("list_objects_v2", directory, Bucket=self.bucket,
                              Prefix=directory.rstrip("/") + "/", MaxKeys=1)  # fmt: skip
            for entry in page.get("Contents", ()):
                head = self._call("head_object", entry["Key"], missing_ok=True,
                                  Bucket=self.bucket, Key=entry["Key"])  # fmt: skip
        until = (head or {}).get("ObjectLockRetainUntilDate")
        if until is None or until <= _now():
            return None
        return until.strftime("%Y-%m-%d %H:%M UTC")

    # -- reading --

    def get(self, path: str, dest: BinaryIO | None, size: int, label: str) -> str:
        digest = hashlib.sha256()
        body = self._call("get_object", path, Bucket=self.bucket, Key=path)["Body"]
        try:
            with output.progress(label, size) as advance:
                while block := body.read(CHUNK):
                    digest.update(block)
                    if dest is not None:
                        dest.write(block)
                    advance(len(block))
        except CONNECTION:
            self._alive = False
            raise TransferError(f"{self.name}: {path}: connection lost") from None
        finally:
            body.close()
        return digest.hexdigest()

    def sha256(self, path: str, size: int, label: str) -> str:
        return self.get(path, None, size, label)

    def read_small(self, path: str, limit: int) -> bytes:
        found = self.read_optional(path, limit)
        if found is None:
            raise TransferError(f"{self.name}: {path}: not there")
        return found

    def read_optional(self, path: str, limit: int) -> bytes | None:
        answer = self._call("get_object", path, missing_ok=True, Bucket=self.bucket, Key=path)
        if answer is None:
            return None
        with contextlib.closing(answer["Body"]) as body:
            if answer["ContentLength"] > limit:
                raise TransferError(f"{self.name}: {path}: larger than {limit} bytes")
            return body.read()

    # -- deleting: batched --

    def remove(self, path: str) -> None:
        self._call("delete_object", path, Bucket=self.bucket, Key=path)

    def delete_backup(self, directory: str) -> None:
        # First the manifest (in a versioned bucket: a delete marker): now incomplete.
        self.remove(posixpath.join(directory, MANIFEST_NAME))
        self._abort_stale(directory.rstrip("/") + "/")
        if self._is_versioned():  # a plain DELETE only hides: every version goes
            objects = list(self._versions(directory))
        else:
            objects = [{"Key": o["Key"]} for page in self._list(directory, delimiter=False)
                       for o in page.get("Contents", ())]  # fmt: skip
        for start in range(0, len(objects), PAGE):  # one request per 1000 keys
            batch = objects[start : start + PAGE]
            answer = self._call("delete_objects", directory, Bucket=self.bucket,
                                Delete={"Objects": batch, "Quiet": True})  # fmt: skip
            if errors := answer.get("Errors"):
                first = errors[0]
                why = f"{self.name}: {first.get('Key')}: not deleted ({first.get('Code')})"
                if self._versioned and first.get("Code") == "AccessDenied":
                    why += (
                        "; Object Lock still retains it (a prune after that deletes it), "
                        "or the keys lack s3:DeleteObjectVersion"
                    )
                raise TransferError(why)

    def _is_versioned(self) -> bool:
        if self._versioned is None:
            answer = self._call("get_bucket_versioning", "", Bucket=self.bucket)
            self._versioned = answer.get("Status") in ("Enabled", "Suspended")
        return self._versioned

    def _versions(self, directory: str) -> Iterator[dict[str, str]]:
        """Every version and delete marker under `directory`, paged."""
        prefix, marker = directory.rstrip("/") + "/", {}
        while True:
            page = self._call("list_object_versions", directory, Bucket=self.bucket,
                              Prefix=prefix, MaxKeys=PAGE, **marker)  # fmt: skip
            for entry in (*page.get("Versions", ()), *page.get("DeleteMarkers", ())):
                yield {"Key": entry["Key"], "VersionId": entry["VersionId"]}
            if not page.get("IsTruncated"):
                return
            marker = {"KeyMarker": page["NextKeyMarker"],
                      "VersionIdMarker": page["NextVersionIdMarker"]}  # fmt: skip


def _now() -> datetime:
    """Our clock for retention dates (a seam: tests make a retention end in seconds)."""
    return datetime.now(UTC)


def _checksums(data: bytes) -> dict[str, str]:
    """What the server checks the bytes against: SHA-256 (AWS), Content-MD5 (everyone)."""
    return {
        "ChecksumSHA256": base64.b64encode(hashlib.sha256(data).digest()).decode(),
        "ContentMD5": base64.b64encode(hashlib.md5(data).digest()).decode(),
    }


def _skewed(exc: bce.ClientError) -> bool:
    """The server's clock and ours differ by more than S3 allows (15 min): a HEAD's
    refusal has no body to say RequestTimeTooSkewed, but its Date header tells."""
    date = exc.response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
    try:
        server = email.utils.parsedate_to_datetime(date) if date else None
    except (TypeError, ValueError):
        return False
    now = botocore.auth.get_current_datetime(remove_tzinfo=False)  # the clock we signed with
    return server is not None and abs(server - now) > SKEW_LIMIT
