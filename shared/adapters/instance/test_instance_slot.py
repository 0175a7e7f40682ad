"""Instance slots: the lowest free one, held while the process lives, naming who held it last."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from shared.adapters.instance.instance_slot import InstanceSlot

HOLD_A_SLOT = """
import sys, time
from pathlib import Path
from shared.adapters.instance.instance_slot import InstanceSlot
slot = InstanceSlot(Path(sys.argv[1]))
print(slot.instance_id, flush=True)
time.sleep(60)
"""


def test_hosts_on_one_folder_get_different_slots_and_a_successor_learns_its_predecessor(tmp_path: Path) -> None:
    first, second = InstanceSlot(tmp_path), InstanceSlot(tmp_path)
    assert (first.number, second.number) == (0, 1)
    assert first.instance_id != second.instance_id
    assert first.predecessor_id is None
    first.release()
    again = InstanceSlot(tmp_path)
    assert again.number == 0
    assert again.predecessor_id == first.instance_id
    assert again.instance_id != first.instance_id
    for slot in (second, again):
        slot.release()


def test_the_slot_of_a_killed_process_is_free_and_names_it(tmp_path: Path) -> None:
    repo = Path(__file__).resolve().parents[3]
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_A_SLOT, str(tmp_path)], cwd=repo, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        killed_id = holder.stdout.readline().strip()
        beside = InstanceSlot(tmp_path)
        assert beside.number == 1  # slot 0 is taken while the holder lives
        beside.release()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
        if holder.stdout is not None:
            holder.stdout.close()
    deadline = time.monotonic() + 5
    while True:
        slot = InstanceSlot(tmp_path)
        if slot.number == 0 or time.monotonic() > deadline:
            break
        slot.release()
        time.sleep(0.05)
    assert slot.number == 0
    assert slot.predecessor_id == killed_id
    slot.release()
