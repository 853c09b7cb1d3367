"""Who runs a command, for the audit trail (an export's custody, a consent link): the operating-system account.

$LOGNAME and $USER, which `getpass.getuser()` reads first, are whatever the caller set, so they name no one.
The effective uid's passwd entry is what the system vouches for. $SUDO_USER is kept beside it when set, marked
as a claim of the environment: sudo sets it, but so can anyone.
"""

from __future__ import annotations

import os
import pwd
from dataclasses import dataclass
from typing import Any

from .oneline import escape_invisible


@dataclass(frozen=True)
class Operator:
    name: str  # the effective uid's account name; "uid N" when it has no passwd entry (a bare container)
    uid: int
    sudo_user: str | None = None  # $SUDO_USER as the environment claims it: not proof

    def __str__(self) -> str:
        text = self.name if self.name == f"uid {self.uid}" else f"{self.name} (uid {self.uid})"
        if self.sudo_user:
            text += f", SUDO_USER {self.sudo_user} (claimed by the environment, not proof)"
        return text

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "uid": self.uid, "sudo_user_claimed": self.sudo_user}


def current_operator() -> Operator:
    uid = os.geteuid()
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = f"uid {uid}"
    return Operator(name, uid, escape_invisible(os.environ.get("SUDO_USER") or "") or None)


def operator_name() -> str:
    """The operator in words, as a register's `*_by` column holds it."""
    return str(current_operator())
