"""The README's protocol wall time is counted from the task graph `eval dataset --ray` submits (issue 28)."""

from benchmarks.protocol_wall_time import Task, protocol_tasks, wall_time


def test_one_gpu_runs_every_task_one_after_another():
    tasks = protocol_tasks("pororo", "paper", anydoor_step=0.5, lora_be_step=1.5, shot=30.0)
    assert len(tasks) == 5 + 5 * 10  # 5 characters' fine-tunes and their 10 samples each (paper, Sec. 4)
    assert wall_time(tasks, 1) == sum(t.seconds for t in tasks)


def test_a_sample_waits_for_its_characters_fine_tune():
    tasks = [Task("finetune a", 10), Task("finetune b", 1), Task("a 1", 2, after="finetune a"),
             Task("b 1", 2, after="finetune b"), Task("b 2", 2, after="finetune b")]
    # Two GPUs: b's samples fill the second GPU while a trains; a's sample starts at 10.
    assert wall_time(tasks, 2) == 12
    # Enough GPUs: the longest chain (a's fine-tune, then its sample) is the wall time.
    assert wall_time(tasks, 8) == 12
    assert wall_time(tasks, 1) == 17
