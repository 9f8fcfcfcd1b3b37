"""The Hugging Face Hub side of exports: telling a repo id from a path, downloading (to the Hugging Face
cache), uploading; every failure is one :class:`HubError` naming the repo and what is needed."""

from __future__ import annotations

import os
import re
from pathlib import Path

from huggingface_hub import HfApi, snapshot_download
from huggingface_hub.errors import (
    HfHubHTTPError,
    HFValidationError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from facegan import __version__

# owner/name as the Hub spells them (one slash; letters, digits, '-', '_', '.'; no '--' or '..').
REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}")
TOKEN_HINT = "a token (token=..., --token, the HF_TOKEN variable or `hf auth login`)"


class HubError(OSError):
    """The Hugging Face Hub could not be used: no network, no (valid) token, no such repo or revision."""


def is_repo_id(source: str | os.PathLike) -> bool:
    """Whether ``source`` is a Hub repo id ``owner/name``: a string naming no existing path (any
    ``os.PathLike`` is local; ``./owner/name`` names a local path)."""
    if not isinstance(source, str) or Path(source).exists():
        return False
    return REPO_ID.fullmatch(source) is not None and ".." not in source and "--" not in source


def _reason(error: BaseException) -> str:
    first = str(error).strip().splitlines()
    return f"{type(error).__name__}: {first[0] if first else ''}".rstrip(": ")


def download(repo_id: str, files: list[str], revision: str | None = None, token: str | None = None) -> Path:
    """The local folder (in the Hugging Face cache) holding ``files`` of the Hub model repo ``repo_id``."""
    where = f"Hub repo {repo_id!r}" + (f" (revision {revision!r})" if revision else "")
    try:
        folder = snapshot_download(
            repo_id, revision=revision, token=token, allow_patterns=files,
            library_name="facegan", library_version=__version__,
        )  # fmt: skip
    except RevisionNotFoundError:
        raise HubError(f"{where}: the repo has no such revision (a branch, tag or commit)") from None
    except RepositoryNotFoundError:  # also gated repos, and private ones without a valid token
        raise HubError(
            f"{where} was not found on the Hugging Face Hub, or it is private or gated and needs "
            f"{TOKEN_HINT}; no local folder {repo_id!r} exists here either (write ./{repo_id} for one)"
        ) from None
    except (LocalEntryNotFoundError, HfHubHTTPError, HFValidationError, OSError) as error:
        raise HubError(
            f"cannot download {where} ({_reason(error)}): loading a Hub repo needs network access to the "
            f"Hugging Face Hub (and HF_HUB_OFFLINE not set) and, for a private or gated repo, {TOKEN_HINT}; a "
            f"repo downloaded once is then read from the Hugging Face cache offline. No local folder "
            f"{repo_id!r} exists here (write ./{repo_id} for a local path)"
        ) from None
    return Path(folder)


def upload(
    folder: Path, repo_id: str, files: list[str], private: bool | None = None, token: str | None = None
) -> str:
    """Upload ``files`` of ``folder`` to the Hub model repo ``repo_id`` (created, ``private=None``: as the
    Hub's default, if needed; an existing repo keeps its visibility); the commit URL."""
    api = HfApi(token=token, library_name="facegan", library_version=__version__)
    try:
        repo = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        commit = api.upload_folder(
            repo_id=repo.repo_id, folder_path=folder, allow_patterns=files, repo_type="model",
            commit_message="Upload facegan generator",
        )  # fmt: skip
    except (HfHubHTTPError, HFValidationError, OSError) as error:
        raise HubError(
            f"cannot push {str(folder)!r} to the Hub repo {repo_id!r} ({_reason(error)}): uploading needs "
            f"network access to the Hugging Face Hub and {TOKEN_HINT} with write access. The export is "
            f"complete in {str(folder)!r}; push it later with `hf upload {repo_id} {folder}`"
        ) from None
    return str(getattr(commit, "commit_url", commit))
