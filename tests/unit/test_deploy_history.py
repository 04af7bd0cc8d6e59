"""The deploy history (parse, render, bad refs) and where a rollback goes, without a host."""

from __future__ import annotations

import json

import pytest

from fabfile.core.deploys import history, remote, target
from fabfile.core.deploys.deployment import Deployment
from fabfile.core.deploys.history import Entry, History
from fabfile.core.deploys.plan import check_to
from fabfile.core.errors import UsageError

pytestmark = pytest.mark.unit

# The sandbox repo's commits: v1.0.0 <- v1.1.0 <- v1.2.0 <- bad.
V100, V110, V120, BAD = (c * 40 for c in "abcd")
TAGS = {V100: ("v1.0.0",), V110: ("v1.1.0",), V120: ("v1.2.0",), BAD: ("bad",)}
ANCESTRY_OF_BAD = (BAD, V120, V110, V100)
ANCESTRY_OF_V120 = (V120, V110, V100)


def entry(action: str, commit: str, previous: str | None, result: str = "ok", **kw) -> Entry:
    values = dict(time="2026-11-24T12:00:00Z", ref=TAGS.get(commit, ("x",))[0], operator="op@lap")
    values.update(kw)
    return Entry(action=action, commit=commit, previous=previous, result=result, **values)


def log(*entries: Entry) -> History:
    """Through the real text format, so every case also round-trips."""
    return history.parse("".join(e.line() + "\n" for e in entries))


def failed_release_of_bad() -> Entry:
    return entry("release", BAD, V120, "failed", bad=BAD, step="start-worker")


# -- parsing and rendering ------------------------------------------------------------


def test_lines_round_trip_and_are_single_json_lines():
    e = entry("rollback", V120, BAD, bad=BAD, ref='we"ird\nref')
    assert "\n" not in e.line()
    assert json.loads(e.line())["ref"] == 'we"ird\nref'
    assert history.parse(e.line() + "\n\n").entries == (e,)


def test_bad_lines_are_skipped_with_their_line_number():
    good = entry("release", V120, V110)
    text = "\n".join(
        [
            good.line(),
            "not json",
            json.dumps({**json.loads(good.line()), "action": "deploy"}),
            json.dumps({**json.loads(good.line()), "commit": "abc123"}),
            json.dumps({**json.loads(good.line()), "result": None}),
            "[1, 2]",
            json.dumps({**json.loads(good.line()), "future_field": 1}),
        ]
    )
    parsed = history.parse(text)
    assert parsed.entries == (good, good)  # an unknown new field is ignored, not fatal
    assert [p.split()[1] for p in parsed.problems] == ["2", "3", "4", "5", "6"]
    assert "action 'deploy'" in parsed.problems[1]
    assert "commit is not a full commit id" in parsed.problems[2]
    assert "no result" in parsed.problems[3]


def test_describe_says_what_replaced_what_and_what_is_bad():
    said = failed_release_of_bad().describe()
    assert said == (
        f"2026-11-24T12:00:00Z release bad ({BAD[:12]}) replacing {V120[:12]} by op@lap: "
        f"failed at start-worker; marks {BAD[:12]} bad"
    )


# -- bad refs, work in flight ----------------------------------------------------------


def test_a_rollback_marks_the_commit_it_left_and_a_named_healthy_deploy_clears_it():
    h = log(entry("release", BAD, V120), entry("rollback", V120, BAD, bad=BAD))
    assert set(h.bad()) == {BAD}
    cleared = log(*h.entries, entry("release", BAD, V120))
    assert cleared.bad() == {}


def test_a_failed_deploy_still_checked_out_is_in_flight():
    h = log(failed_release_of_bad())
    assert h.in_flight(BAD) == h.entries[-1]
    assert h.in_flight(V120) is None  # someone moved HEAD since: not the same deploy
    assert log(entry("release", BAD, V120)).in_flight(BAD) is None


def test_retrying_a_failed_deploy_replaces_what_ran_before_it():
    h = log(failed_release_of_bad())
    assert h.live_before(BAD, BAD) == V120
    assert h.live_before(BAD, V110) == BAD  # a different target replaces the failed code
    assert History().live_before(V120, BAD) == V120


# -- where a rollback goes -------------------------------------------------------------


def test_without_history_the_newest_tag_before_head():
    chosen = target.rollback_target(History(), V120, TAGS, ANCESTRY_OF_V120)
    assert (chosen.commit, chosen.label) == (V110, "v1.1.0")
    assert "newest tag" in chosen.why


def test_untagged_head_goes_to_its_newest_tagged_ancestor():
    head, between = "e" * 40, "f" * 40
    chosen = target.rollback_target(History(), head, TAGS, (head, between, V120, V110))
    assert chosen.commit == V120


def test_after_a_failed_release_the_deployment_before_it():
    chosen = target.rollback_target(log(failed_release_of_bad()), BAD, TAGS, ANCESTRY_OF_BAD)
    assert (chosen.commit, chosen.label) == (V120, "v1.2.0")
    assert "per the history" in chosen.why


def test_a_second_rollback_skips_the_bad_ref_and_falls_back_to_tags():
    h = log(failed_release_of_bad(), entry("rollback", V120, BAD, bad=BAD))
    chosen = target.rollback_target(h, V120, TAGS, ANCESTRY_OF_V120)
    assert chosen.commit == V110


def test_history_is_followed_back_past_the_current_and_bad_commits():
    h = log(
        entry("release", V110, V100),
        entry("release", V120, V110),
        entry("release", BAD, V120),
        entry("rollback", V120, BAD, bad=BAD),
    )
    # HEAD is v1.2.0; bad is marked; v1.1.0 ran before v1.2.0.
    assert target.rollback_target(h, V120, TAGS, ANCESTRY_OF_V120).commit == V110
    # A commit released by branch name is named by its id: the branch has moved on since.
    branch = "e" * 40
    h2 = log(entry("release", branch, V120, ref="main"), entry("release", V110, branch))
    chosen = target.rollback_target(h2, V110, TAGS, (V110, V100))
    assert (chosen.commit, chosen.label) == (branch, branch[:12])


def test_a_failed_rollback_still_checked_out_is_retried():
    h = log(entry("rollback", V110, V120, "failed", bad=V120, step="start-api"))
    chosen = target.rollback_target(h, V110, TAGS, (V110, V100))
    assert chosen.commit == V110 and "retrying" in chosen.why and "start-api" in chosen.why


def test_nothing_left_to_roll_back_to():
    h = log(entry("rollback", V110, V120, bad=V120), entry("rollback", V100, V110, bad=V110))
    with pytest.raises(target.NoTarget):
        target.rollback_target(h, V100, TAGS, (V100,))


# -- what a deploy records -------------------------------------------------------------


def deployment(action: str, commit: str, previous: str) -> Deployment:
    d = Deployment(action, "r", "r", "why", previous, History(), TAGS)
    d.commit, d.previous = commit, previous
    return d


def test_entries_mark_the_ref_rolled_back_from_or_the_failed_release():
    assert deployment("rollback", V120, BAD).entry("ok").bad == BAD
    assert deployment("rollback", V120, BAD).entry("failed", "start-api").bad == BAD
    assert deployment("release", BAD, V120).entry("failed", "start-worker").bad == BAD
    assert deployment("release", V120, V110).entry("ok").bad is None
    # A restart of what already runs marks nothing.
    assert deployment("rollback", V120, V120).entry("ok").bad is None
    made = deployment("release", BAD, V120).entry("failed", "start-worker")
    assert history.entry_from(json.loads(made.line())) == made


@pytest.mark.parametrize("bad_ref", ["-x", "--upload-pack=sh", "a..b", "v1 2", "", "é"])
def test_to_must_look_like_a_ref(bad_ref):
    with pytest.raises(UsageError, match="--to"):
        check_to(bad_ref)


# -- what the host says ----------------------------------------------------------------

# Recorded on the sandbox's prod2 (v1.2.0 checked out; v1.x annotated, `bad` lightweight).
REPO_STATE = """\
head 299f172edb05843f0ed34d1e1429091715f7a932
changed 0
tag 14ca465a7d8b9a922f1c46f921de7e078000b12e  bad
tag 13fd1877643546bdab5a4741f1a1bc0b75eda6b4 960ea5b312d58e6a654668291d5ce0c4d7395e84 v1.0.0
tag 1c04f0007114518af4ac2fb2c85903dd138a50bf 47781921353f9bbcdc435fa63efbaae5f4f9e6d6 v1.1.0
tag 9060b3d8ce08d99b2334476d9459caf893b867a6 299f172edb05843f0ed34d1e1429091715f7a932 v1.2.0
ancestor 299f172edb05843f0ed34d1e1429091715f7a932
ancestor 47781921353f9bbcdc435fa63efbaae5f4f9e6d6
ancestor 960ea5b312d58e6a654668291d5ce0c4d7395e84
"""


def test_repo_state_peels_annotated_tags_to_their_commits():
    state = remote.parse_repo_state(REPO_STATE)
    assert state.head == "299f172edb05843f0ed34d1e1429091715f7a932"
    assert state.tags["299f172edb05843f0ed34d1e1429091715f7a932"] == ("v1.2.0",)
    assert state.tags["14ca465a7d8b9a922f1c46f921de7e078000b12e"] == ("bad",)
    assert len(state.ancestry) == 3 and state.changed == 0
    chosen = target.rollback_target(History(), state.head, state.tags, state.ancestry)
    assert chosen.label == "v1.1.0"


def test_no_checkout_and_local_changes_are_visible():
    assert remote.parse_repo_state("").head is None
    assert remote.parse_repo_state("head \nchanged 3\n") == remote.RepoState(None, {}, (), 3)


def test_commit_and_blob_parsers():
    sha = "14ca465a7d8b9a922f1c46f921de7e078000b12e"
    assert remote.parse_commit(f"{sha}\n") == sha
    assert remote.parse_commit("") is None and remote.parse_commit("fatal: x") is None
    assert remote.parse_blob_ids(f"{sha}\n-\nnot-hex\n") == [sha, None, None]
