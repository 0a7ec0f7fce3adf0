"""Checkpoints check themselves (SHA-256), keep the previous good one, and cannot run code."""

from __future__ import annotations

import hashlib
import io
import os
import random

import pytest
import torch

from lrbench import checkpoint
from lrbench.checkpoint import CheckpointError


class Payload:
    """Unpickling this calls os.system: what a checkpoint someone shared could hold."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_pickled_callable_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / checkpoint.NAME
    path.write_bytes(checkpoint.dumps({"step": 1, "model": Payload(marker)}))  # a valid hash
    with pytest.raises(CheckpointError, match=r"refused: .*could run code.*system"):
        checkpoint.load(path)
    assert not marker.exists()
    # The same bytes loaded the old way (weights_only=False) do run the command: the test can fail.
    payload = path.read_bytes().split(b"\n", 1)[1]
    torch.load(io.BytesIO(payload), weights_only=False)
    assert marker.exists()


def test_round_trip_holds_tensors_rng_states_and_plain_values(tmp_path):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters())
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    state = dict(
        model=model.state_dict(),
        optimizer=opt.state_dict(),
        rng={"torch": torch.get_rng_state()},
        step=7,
        elapsed=1.5,
        converged_at=None,
        settings={"lr": 3e-3, "max_seconds": None, "T": 8},
    )
    checkpoint.save(tmp_path, state)
    back = checkpoint.load(tmp_path / checkpoint.NAME)
    assert (
        back["step"] == 7 and back["settings"] == state["settings"] and back["converged_at"] is None
    )
    assert torch.equal(back["rng"]["torch"], state["rng"]["torch"])
    assert torch.equal(back["model"]["weight"], model.weight)
    assert back["optimizer"]["param_groups"][0]["lr"] == 1e-3


def test_save_keeps_the_previous_good_checkpoint(tmp_path):
    checkpoint.save(tmp_path, {"step": 1})
    assert not (tmp_path / checkpoint.PREVIOUS).exists()
    checkpoint.save(tmp_path, {"step": 2})
    assert checkpoint.load(tmp_path / checkpoint.PREVIOUS)["step"] == 1
    (tmp_path / checkpoint.NAME).write_bytes(b"garbage")
    checkpoint.save(tmp_path, {"step": 3})  # a bad newest is not kept as "previous"
    assert checkpoint.load(tmp_path / checkpoint.PREVIOUS)["step"] == 1
    assert checkpoint.load_newest(tmp_path)[0]["step"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == [checkpoint.PREVIOUS, checkpoint.NAME]


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: b"", "empty"),
        (lambda d: d[:-1], "corrupt or truncated"),
        (lambda d: d[: len(d) // 2], "corrupt or truncated"),
        (
            lambda d: d[:200] + bytes([d[200] ^ 1]) + d[201:],
            "corrupt or truncated",
        ),  # one flipped bit
        (lambda d: d.split(b"\n", 1)[1], "not an lrbench checkpoint"),  # a bare torch.save
    ],
)
def test_damage_is_named_in_one_line(tmp_path, damage, message):
    path = tmp_path / checkpoint.NAME
    data = checkpoint.dumps({"step": 1, "w": torch.arange(100.0)})
    path.write_bytes(damage(data))
    with pytest.raises(CheckpointError, match=message) as e:
        checkpoint.load(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_no_usable_checkpoint_names_every_file(tmp_path):
    (tmp_path / checkpoint.NAME).write_bytes(b"")
    with pytest.raises(
        CheckpointError, match="no usable checkpoint.*empty.*checkpoint.prev.pt: missing"
    ):
        checkpoint.load_newest(tmp_path)


def _with_header(payload: bytes) -> bytes:
    """``payload`` behind a header whose SHA-256 matches it."""
    return checkpoint.HEADER + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload


def test_random_bytes_behind_a_valid_header_are_damaged_not_code(tmp_path):
    path = tmp_path / checkpoint.NAME
    payload = bytes(random.Random(1).randrange(256) for _ in range(4000))
    path.write_bytes(_with_header(payload))
    with pytest.raises(CheckpointError) as e:
        checkpoint.load(path)
    assert str(e.value).startswith(f"{path}: damaged: not a torch.save archive"), e.value
    assert "code" not in str(e.value) and "\n" not in str(e.value)


def test_a_valid_archive_that_does_not_unpickle_is_damaged_not_code(tmp_path):
    path = tmp_path / checkpoint.NAME
    data = checkpoint.dumps({"step": 1, "w": torch.arange(4.0)})
    # the first key's opcode in data.pkl becomes 0xfe, which no pickle protocol has
    payload = data.split(b"\n", 1)[1].replace(b"\x80\x02}q\x00(X", b"\x80\x02}q\x00(\xfe", 1)
    assert payload != data.split(b"\n", 1)[1]
    path.write_bytes(_with_header(payload))
    with pytest.raises(CheckpointError, match=r"damaged: .*Unsupported operand 254") as e:
        checkpoint.load(path)
    assert "code" not in str(e.value)


def test_two_savers_at_once_do_not_take_each_others_temporary_link(tmp_path, monkeypatch):
    """Saver B runs whole between saver A's hard link and A's rename to checkpoint.prev.pt: with
    one shared temporary name, B renames A's link away and A's rename finds nothing."""
    checkpoint.save(tmp_path, {"step": 1})
    real, seen = os.replace, []

    def replace(src, dst):
        if str(dst).endswith(checkpoint.PREVIOUS) and not seen:
            seen.append(src)
            checkpoint.save(tmp_path, {"step": 2})  # the other saver
        real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    checkpoint.save(tmp_path, {"step": 3})
    assert seen and checkpoint.load(tmp_path / checkpoint.NAME)["step"] == 3
    assert checkpoint.load(tmp_path / checkpoint.PREVIOUS)["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [checkpoint.PREVIOUS, checkpoint.NAME]


def test_load_newest_can_check_the_state_and_reports_a_bad_one_as_damaged(tmp_path):
    checkpoint.save(tmp_path, {"step": 1, "settings": {}})
    checkpoint.save(tmp_path, {"step": 2, "settings": []})

    def check(state):
        return None if isinstance(state["settings"], dict) else "'settings' is a list, not a dict"

    state, path, skipped = checkpoint.load_newest(tmp_path, check=check)
    assert state["step"] == 1 and path.name == checkpoint.PREVIOUS
    assert skipped == [f"{tmp_path / checkpoint.NAME}: damaged ('settings' is a list, not a dict)"]
