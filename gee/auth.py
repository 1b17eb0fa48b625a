"""Earth Engine sign-in from the user's own credentials; nothing about them is printed or saved.

Two sources, in this order: a service-account key file named by LSD_EE_SERVICE_ACCOUNT (for
servers and CI, where nobody can run a browser flow), else what `earthengine authenticate` stored
(or Application Default Credentials). A missing or broken credential is a user mistake, so it
becomes one line that says how to fix it instead of the ee client's multi-line advice.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from lsd.errors import InputNotFound, InvalidFile, InvalidValue, ServiceUnavailable

SERVICE_ACCOUNT_ENV = "LSD_EE_SERVICE_ACCOUNT"
PROJECT_ENVS = ("EE_PROJECT", "GOOGLE_CLOUD_PROJECT")
HOW_TO = (
    "no Earth Engine credentials: run `earthengine authenticate` "
    f"or set {SERVICE_ACCOUNT_ENV} to a service-account key file"
)

_credentials: Any = None  # kept in memory only, for the Cloud Storage download of an export


def user_credentials_path() -> Path:
    return Path(os.path.expanduser("~/.config/earthengine/credentials"))


def credentials_available() -> bool:
    """Cheap local check (no network) used by dry runs and the live tests to decide what to do."""
    key = os.environ.get(SERVICE_ACCOUNT_ENV)
    if key:
        return Path(key).is_file()
    return user_credentials_path().is_file() or bool(
        os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
    )


def resolve_project(project: str | None) -> str | None:
    if project:
        return project
    for env in PROJECT_ENVS:
        if os.environ.get(env):
            return os.environ[env]
    return None


def _service_account(path_text: str) -> tuple[Any, str | None]:
    import ee

    path = Path(path_text)
    where = f"{SERVICE_ACCOUNT_ENV}={path}"
    try:
        info = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputNotFound(f"{where}: key file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise InvalidFile(f"{where}: not a readable service-account JSON key") from None
    email = info.get("client_email") if isinstance(info, dict) else None
    if not email or "private_key" not in info:
        raise InvalidFile(f"{where}: not a service-account key (no client_email/private_key)")
    return ee.ServiceAccountCredentials(email, key_data=json.dumps(info)), info.get("project_id")


def initialize(project: str | None = None) -> None:
    """Initialise ee once per process; a session the caller already opened is reused as is.

    Reuse matters for notebooks and tests that initialise ee themselves (with their own project
    or an offline stub): signing in again here would replace their session.
    """
    global _credentials
    import ee

    if ee.data.is_initialized():
        return
    project = resolve_project(project)
    key = os.environ.get(SERVICE_ACCOUNT_ENV)
    try:
        if key:
            creds, key_project = _service_account(key)
            ee.Initialize(creds, project=project or key_project)
        else:
            creds = ee.data.get_persistent_credentials()
            ee.Initialize(creds, project=project)
    except ee.EEException as exc:
        text = str(exc)
        if "authenticate" in text or "authorize" in text.lower():
            raise ServiceUnavailable(HOW_TO) from None
        if "project" in text.lower():
            raise InvalidValue(
                "no Google Cloud project for Earth Engine: name one or set EE_PROJECT "
                "(the project must have the Earth Engine API enabled)",
                field="project",
            ) from None
        raise ServiceUnavailable(f"Earth Engine sign-in failed: {text.splitlines()[0]}") from None
    _credentials = creds


def current_credentials() -> Any:
    """The credentials `initialize` used (None when ee was opened by someone else)."""
    return _credentials
