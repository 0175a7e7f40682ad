"""An erased subject's dead letters: found by the identifiers their bodies name, then removed.

The dead letters (the poison queue and the dead-letter queue, or the embedded queue's table)
hold whole messages, so they hold people's events; an erasure removes the subject's there
too (the erasure's `dead_letters` step), through the `DeadLetterBrowser` port alone, so the
same code runs on both backends. A body is the subject's when `message_identifiers` reads the
subject's tenant from it and, in the subject's field (`userId` or `anonymousId`), the subject's
value; a body that is not an envelope, or not JSON, names nobody and stays.

The bound: `DeadLetterBrowser.list(limit)` gives the oldest `limit` and cannot start further
on, so the search lists with a growing limit (`page`, then twice that, ...) until a list comes
back shorter than asked: then it has seen every dead letter, having read at most four times
as many overall. It reads at most `max_scan` dead letters (held in memory at once); with more
than that it removes the subject's among the oldest `max_scan` and raises
`DeadLetterScanLimitError`, since saying "done" would leave the rest. A dead-letter queue that
deep is an incident of its own: replay or remove what is there, then run the erasure again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from shared.domain.privacy import Subject, message_identifiers
from shared.ports import DeadLetter, DeadLetterBrowser, PortError

__all__ = ["MAX_SCAN", "DeadLetterScanLimitError", "erase_subject_dead_letters", "names_subject"]

MAX_SCAN: Final = 50_000
"""The most dead letters one erasure reads (see the module's docstring)."""


class DeadLetterScanLimitError(PortError):
    """There are more dead letters than one erasure reads; the subject's among the oldest were removed."""


async def erase_subject_dead_letters(
    browser: DeadLetterBrowser, subject: Subject, *, page: int = 500, max_scan: int = MAX_SCAN
) -> tuple[int, int]:
    """Remove every dead letter of `subject`; return (found, removed).

    `removed` is smaller than `found` when some went meanwhile (replayed by an operator: the
    suppression list drops them in the process stage). Running it again finds none. Raises
    `PortError` when the backend fails, `DeadLetterScanLimitError` past `max_scan` dead letters.
    """
    dead_letters, complete = await _list_all(browser, page=page, max_scan=max_scan)
    ids = [dead_letter.id for dead_letter in dead_letters if names_subject(dead_letter.body, subject)]
    removed = await browser.remove(ids) if ids else 0
    if not complete:
        raise DeadLetterScanLimitError(
            f"There are more than {max_scan} dead letters; the oldest {max_scan} were searched and the "
            f"{removed} of this subject among them removed. Replay or remove the dead letters, then run the "
            "erasure again."
        )
    return len(ids), removed


def names_subject(body: bytes, subject: Subject) -> bool:
    """Whether a queue message body is an event of `subject` (same tenant, same identifier in its field)."""
    identifiers = message_identifiers(body)
    if identifiers is None:
        return False
    tenant_id, user_id, anonymous_id, _ = identifiers
    value = user_id if subject.field == "userId" else anonymous_id
    return tenant_id == subject.tenant_id and value == subject.value


async def _list_all(browser: DeadLetterBrowser, *, page: int, max_scan: int) -> tuple[Sequence[DeadLetter], bool]:
    """Every dead letter (True), or the oldest `max_scan` when there are more (False)."""
    limit = max(page, 1)
    while True:
        asked = min(limit, max_scan + 1)  # one past the bound tells whether there are more
        dead_letters = await browser.list(asked)
        if len(dead_letters) < asked:
            return dead_letters, True
        if asked > max_scan:
            return dead_letters[:max_scan], False
        limit *= 2
