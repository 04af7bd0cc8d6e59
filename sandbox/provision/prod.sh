# prod: the runbook's production layout. Env: REPO_URL, WHEELS_URL, RELEASE.
root=/opt/zachot
id zachot >/dev/null 2>&1 || useradd -r -U -d "$root" -s /bin/false zachot
install -d -o zachot -g zachot "$root" "$root/envs" "$root/logs"
# Root's server-side env copies: root-owned 0700, as backup.env requires (README, threat model).
install -d -o root -g root -m 0700 "$root/backups"

# Code: cloned from the served git remote at a tagged release (detached, as deployed).
runuser -u zachot -- env HOME="$root" git clone -q "$REPO_URL" "$root/repo"
runuser -u zachot -- env HOME="$root" git -C "$root/repo" -c advice.detachedHead=false checkout -q "$RELEASE"

# venv from the served wheelhouse only: the box has no route to PyPI (plain HTTP on the veth).
wheel_host=$(echo "$WHEELS_URL" | cut -d/ -f3 | cut -d: -f1)
runuser -u zachot -- python3 -m venv "$root/envs/prod"
runuser -u zachot -- env HOME="$root" "$root/envs/prod/bin/pip" install -q --no-cache-dir \
    --disable-pip-version-check --no-index --find-links "$WHEELS_URL" --trusted-host "$wheel_host" -r "$root/repo/requirements.txt"

# Env file: root-readable only by zachot (0600), realistic keys with fake secrets.
install -d -o zachot -g zachot -m 0750 "$root/envs/prod/etc"
umask 077
cat > "$root/envs/prod/etc/zachot.env" <<ENV
# zachot production settings (sandbox: secrets are fake)
REDIS_URL=redis://127.0.0.1:6379/0
WORKER_CONCURRENCY=2
API_HOST=0.0.0.0
API_PORT=8000
API_SECRET_KEY=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
SENTRY_DSN=https://$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')@sentry.invalid/4242
ENV
umask 022
chown zachot:zachot "$root/envs/prod/etc/zachot.env"
chmod 0600 "$root/envs/prod/etc/zachot.env"

# Units as kept in the repo's infra/, installed and enabled.
install -m 0644 "$root/repo/infra/zachot-api.service" "$root/repo/infra/zachot-worker.service" /etc/systemd/system/
install -m 0644 "$root/repo/infra/logrotate.conf" /etc/logrotate.d/zachot
systemctl enable redis-server.service zachot-api.service zachot-worker.service 2>/dev/null

# A week of rotated history, as logrotate (daily, delaycompress) leaves it: .1 plain, older .gz.
for name in api.log api.err worker.log worker.err; do
    for n in 1 2 3 4 5 6 7; do
        day=$(date -u -d "$n days ago" +%F)
        f="$root/logs/$name.$n"
        for h in 03 09 15 21; do echo "$day $h:00:00 INFO zachot ${name%%.*}: sandbox history line"; done > "$f"
        touch -d "$day 23:59" "$f"
        [ "$n" -gt 1 ] && gzip -n "$f" && touch -d "$day 23:59" "$f.gz"
    done
    install -o zachot -g zachot -m 0644 /dev/null "$root/logs/$name"
done
chown -R zachot:zachot "$root/logs"
