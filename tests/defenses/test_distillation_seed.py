"""`distill(seed=...)` (what `underfire train --defense distillation` calls) starts teacher and
student from the same seeded weights, whether the teacher is trained now or resumed."""

from __future__ import annotations

import torch
from torch import nn

from underfire.defenses import train_distilled
from underfire.train import TrainConfig


def test_a_seeded_student_is_the_same_whether_its_teacher_was_trained_or_reused(tmp_path):
    from underfire.data import load_dataset
    from underfire.models import model_for_dataset

    torch.set_num_threads(1)
    train = load_dataset("digits", "train").subset(128)
    cfg = TrainConfig(steps=4, batch_size=32, seed=5)

    def factory() -> nn.Module:
        return model_for_dataset("ross-cnn", "digits", hidden=16)

    path = tmp_path / "m.pt"
    first = train_distilled(factory, train, temperature=5.0, config=cfg, checkpoint=path, seed=5)
    assert not first.result.reused and first.result.steps == 4
    path.unlink()  # the student again; its teacher is reused from m.teacher.pt
    torch.manual_seed(123)  # whatever the global state: the seed decides
    second = train_distilled(factory, train, temperature=5.0, config=cfg, checkpoint=path, seed=5)
    for name, value in first.student.state_dict().items():
        assert torch.equal(second.student.state_dict()[name], value), name
    again = train_distilled(factory, train, temperature=5.0, config=cfg, checkpoint=path, seed=5)
    assert again.result.reused  # a finished student is reused, not retrained
