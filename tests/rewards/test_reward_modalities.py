"""The rewards' per-modality table: every studio modality has an entry, and something scores it."""
import ast
from pathlib import Path

from studio import rewards
from studio.modalities import MODALITIES
from studio.rewards.modalities import REWARD_MODALITIES, scored_as


def test_every_studio_modality_has_a_reward_entry_and_a_reward():
    missing = sorted(set(MODALITIES) - set(REWARD_MODALITIES))
    assert not missing, f"studio modalities without an entry in studio.rewards.REWARD_MODALITIES: {missing}"
    assert set(REWARD_MODALITIES) == set(MODALITIES), "an entry for a modality the studio does not have"
    for name, entry in REWARD_MODALITIES.items():
        assert entry.name == name
        if entry.frames_of:  # frames are scored by another entry's rewards, which must not be frames again
            assert REWARD_MODALITIES[entry.frames_of].frames_of is None
        base = scored_as(name)
        assert [n for n, s in rewards.REWARDS.items() if base in s.modalities], f"no reward scores {name}"
        if entry.features is not None:  # its learned reward is registered under its name and lists the modality
            row = next(r for r in rewards.available() if r["name"] == entry.learned_name)
            assert name in row["modalities"]


def test_the_table_imports_nothing_of_the_studio():
    tree = ast.parse((Path(rewards.__file__).parent / "modalities.py").read_text())
    bad = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and (
        n.level > 1 or (n.level == 0 and n.module and n.module.split(".")[0] in ("studio", "ui")))]
    bad += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names
            if a.name.split(".")[0] in ("studio", "ui")]
    assert not bad, bad
