"""The rule for a service's name, in one place: the deploy entry points (`Webservice.deploy_from_image`,
`Model.deploy`) check it with their own messages."""

from __future__ import annotations

import re
from typing import Any

SERVICE_NAME = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")  # whole names only: fullmatch


def is_service_name(name: Any) -> bool:
    """3-32 characters: lowercase letters, digits and '-', starting with a letter, not ending with '-' (v1's rule)."""
    return isinstance(name, str) and 3 <= len(name) <= 32 and SERVICE_NAME.fullmatch(name) is not None
