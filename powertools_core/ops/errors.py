"""Expected refusals of operator actions (one line each, exit 2, nothing changed)."""

from __future__ import annotations

from powertools_core.errors import InvalidInput, PowertoolsError

MIN_REASON_LENGTH = 8


class ActorRequired(InvalidInput):
    code = "actor_required"


class ReasonRequired(InvalidInput):
    code = "reason_required"


class ReasonTooShort(InvalidInput):
    code = "reason_too_short"


class ConfirmationRequired(InvalidInput):
    code = "confirmation_required"


class PreviewDrifted(PowertoolsError):
    """The selection no longer matches the previewed plan (``--preview-token``)."""

    code = "preview_drifted"


def check_intent(actor: str | None, reason: str | None) -> tuple[str, str]:
    """The trimmed actor and reason, or the refusal naming what is missing."""
    who = (actor or "").strip()
    why = " ".join((reason or "").split())
    if not who:
        raise ActorRequired(
            "an actor is required to change jobs",
            hint="pass --actor NAME or set POWERTOOLS_ACTOR",
        )
    if not why:
        raise ReasonRequired(
            "a reason is required to change jobs",
            hint=f'pass --reason "..." (at least {MIN_REASON_LENGTH} characters)',
        )
    if len(why) < MIN_REASON_LENGTH:
        raise ReasonTooShort(
            f"the reason is too short ({len(why)} characters; at least {MIN_REASON_LENGTH})",
            hint='say why, e.g. --reason "provider outage fixed"',
        )
    return who, why
