"""A hub revision as the commit it names: what makes a branch or tag a pin.

``main`` or a tag can move; a run that recorded only the name would be restored from DVC's run-cache
after the repository changed under it. ``check`` resolves every hub revision to its commit and
records both, so a moved branch changes a dependency and reruns what used it.
"""

from __future__ import annotations

import re
from pathlib import Path

from fewshot_dml.core.errors import UserError

COMMIT = re.compile(r"[0-9a-f]{40}")  # a git commit sha, as the hub writes it


def cached_commit(repo_id: str, revision: str, repo_type: str) -> str | None:
    """The commit ``revision`` named when the local hub cache last saw it (its ``refs/<revision>``)."""
    from huggingface_hub import constants

    ref = Path(constants.HF_HUB_CACHE) / f"{repo_type}s--{repo_id.replace('/', '--')}" / "refs" / revision
    return ref.read_text().strip() if ref.is_file() else None


def resolve_commit(repo_id: str, revision: str, repo_type: str) -> str:
    """The 40-hex commit of ``revision`` (a commit sha, a tag or a branch) of the hub repository
    ``repo_id`` (``repo_type`` ``model`` or ``dataset``): asked of the hub, or, offline
    (``HF_HUB_OFFLINE=1``), read from the local hub cache. UserError if neither can say."""
    if COMMIT.fullmatch(revision):
        return revision
    from huggingface_hub import HfApi, constants

    why = "HF_HUB_OFFLINE is set, so only the local hub cache is read"
    if not constants.HF_HUB_OFFLINE:
        try:
            sha = HfApi().repo_info(repo_id, repo_type=repo_type, revision=revision).sha
            if sha:
                return sha
        except Exception as err:  # the hub raises a dozen types (offline, unknown repo or revision, network)
            why = f"the hub said {type(err).__name__}: {' '.join(str(err).split())[:200]}"
    cached = cached_commit(repo_id, revision, repo_type)
    if cached is not None and COMMIT.fullmatch(cached):
        return cached
    raise UserError(
        f"the hub {repo_type} {repo_id!r} at revision {revision!r}: cannot resolve it to a commit ({why}, and the cache has "
        f"no refs/{revision}); expected a reachable revision, or a 40-character commit sha already in the cache"
    )
