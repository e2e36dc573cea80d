"""The Lua scripts, read once from the `.lua` files beside this module."""

from __future__ import annotations

from importlib import resources
from typing import Final


def _script(name: str) -> str:
    return resources.files("analytics.queue").joinpath("lua", f"{name}.lua").read_text(encoding="utf-8")


CLAIM: Final = _script("claim")
RECOVER: Final = _script("recover")
GIVE_BACK: Final = _script("give_back")
RENEW: Final = _script("renew")
RELEASE: Final = _script("release")
