"""The StoryAgent paper's numbers (ICLR 2025, arXiv 2411.04925 v1, Sec. 4 and Appendix A.5), and the
dataset protocol's report that prints them beside ours.

The values are the package's own copy of the project's transcription of the paper's PDF
(`../shared/paper/tables.json`; `tests/eval/test_paper_tables.py` checks the two agree), so an
installed package needs nothing outside itself. `paper_tables_json()` rebuilds that file's layout
from the constants below.

- `PAPER_TABLE1`: Table 1, storytelling video generation on PororoSV and FlintstonesSV against the
  ground truth (FVD, SSIM, PSNR, LPIPS): SVD, TI-SparseCtrl and StoryAgent.
- `PAPER_TABLE5`: Table 5, the video-generation ablation on the same protocol: DC-finetuning
  (DynamiCrafter's image injection module fine-tuned on the reference videos, no LoRA-BE) and
  StoryAgent.
- `PAPER_TABLE2`: Table 2, the open-domain set (8 subjects, no ground truth) with EvalCrafter's
  no-reference metrics; `eval compare` prints it beside its runs.
- `PAPER_TABLE3`, `PAPER_TABLE4`: the user studies (1-5); Table 4's LoRA-DC (DynamiCrafter + LoRA
  without block-wise embeddings) is our `lora-dc` method, which no metric table of the paper reports.
- `PAPER_TABLE6`: the observer functions' storyboard scores.
- `PAPER_PROTOCOL`, `PAPER_IMPLEMENTATION`: what Sec. 4 and A.5 state of the protocol and training.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from storyagent.eval.dataset_protocol import METRICS, DatasetEval
from storyagent.eval.report import bar_plot, write_tables
from storyagent.fileio import atomic_write_json

PAPER_SOURCE = ("StoryAgent: Customized Storytelling Video Generation via Multi-Agent Collaboration, ICLR 2025, "
                "arXiv 2411.04925 v1, Sec. 4 and Appendix A.5")
CITE = "StoryAgent paper (arXiv 2411.04925)"
DATASET_NAMES = {"pororo": "PororoSV", "flintstones": "FlintstonesSV"}

Row = dict[str, float]
"""Metric column -> value, in the paper's column order."""


def _rows(columns: tuple[str, ...], rows: dict[str, list[float]]) -> dict[str, Row]:
    return {method: dict(zip(columns, values, strict=True)) for method, values in rows.items()}


REFERENCE_COLUMNS = ("FVD", "SSIM", "PSNR", "LPIPS")
PAPER_TABLE1: dict[str, dict[str, Row]] = {
    "PororoSV": _rows(REFERENCE_COLUMNS, {
        "SVD": [2634.01, 0.5584, 14.2813, 0.3737],
        "TI-SparseCtrl": [4209.80, 0.5042, 12.2749, 0.5646],
        "StoryAgent": [2070.56, 0.6995, 17.5104, 0.2535],
    }),
    "FlintstonesSV": _rows(REFERENCE_COLUMNS, {
        "SVD": [1864.91, 0.4460, 14.5968, 0.4023],
        "TI-SparseCtrl": [3277.96, 0.5571, 14.7053, 0.4958],
        "StoryAgent": [991.37, 0.6700, 18.1169, 0.2490],
    }),
}
"""Table 1: storytelling video generation against the ground truth, per dataset and method."""
PAPER_TABLE5: dict[str, dict[str, Row]] = {
    "PororoSV": _rows(REFERENCE_COLUMNS, {
        "DC-finetuning": [2251.47, 0.4479, 13.5322, 0.4878],
        "StoryAgent": [2070.56, 0.6995, 17.5104, 0.2535],
    }),
    "FlintstonesSV": _rows(REFERENCE_COLUMNS, {
        "DC-finetuning": [3753.91, 0.3357, 10.4159, 0.6042],
        "StoryAgent": [991.37, 0.6700, 18.1169, 0.2490],
    }),
}
"""Table 5: the video-generation ablation (DC-finetuning: DynamiCrafter's image injection module
fine-tuned on the reference videos, without LoRA-BE)."""
OPEN_DOMAIN_COLUMNS = ("IS", "CLIP-score", "CLIP-temp", "Warping error", "Flow-score")
PAPER_TABLE2: dict[str, Row] = _rows(OPEN_DOMAIN_COLUMNS, {
    "StoryAgent": [2.6346, 0.2053, 0.9985, 0.0184, 2.4332],
    "TI-SparseCtrl": [2.4184, 0.1963, 0.9969, 0.0189, 2.6334],
    "SVD": [2.3831, 0.2013, 0.9959, 0.0264, 5.2117],
    "TI-AnimateDiff": [2.4539, 0.2023, 0.9990, 0.0043, 1.8184],
    "DreamVideo": [3.4421, 0.1843, 0.9963, 0.0208, 5.1140],
    "Magic-Me": [2.3989, 0.2003, 0.9992, 0.0048, 1.4092],
})
"""Table 2: the open-domain set (8 subjects, stories by ChatGPT), EvalCrafter's no-reference metrics."""
TABLE2_COLUMN = {"IS": "IS", "CLIP-score": "CLIP-score", "CLIP-temp": "CLIP-temp", "Warping error": "Warping error",
                 "Flow-score": "Flow score"}
"""The paper's Table 2 column -> `eval film`'s column of the same metric."""
USER_STUDY_COLUMNS = ("IRC", "IAC", "SBH", "TA", "OQ")
PAPER_TABLE3: dict[str, Row] = _rows(USER_STUDY_COLUMNS, {
    "TI-AnimateDiff": [2.9, 3.8, 3.4, 2.7, 3.0],
    "DreamVideo": [1.4, 2.6, 2.3, 2.0, 1.7],
    "Magic-Me": [2.9, 3.6, 3.7, 3.0, 3.3],
    "TI-SparseCtrl": [2.6, 2.4, 2.9, 2.8, 2.5],
    "SVD": [3.4, 3.0, 3.4, 2.8, 2.8],
    "StoryAgent": [4.6, 4.8, 4.3, 3.9, 3.8],
})
"""Table 3: user study on the open-domain set (1-5, 14 valid responses)."""
PAPER_TABLE4: dict[str, Row] = _rows(USER_STUDY_COLUMNS, {
    "SVD": [3.5, 2.9, 3.4, 3.4, 3.1],
    "TI-SparseCtrl": [1.7, 1.7, 2.0, 1.9, 1.5],
    "LoRA-SparseCtrl": [2.5, 2.1, 2.0, 2.0, 1.9],
    "DC": [2.0, 1.9, 1.7, 2.1, 1.8],
    "LoRA-DC": [3.9, 3.8, 3.9, 3.6, 3.4],
    "StoryAgent": [4.8, 4.8, 4.5, 4.3, 4.4],
})
"""Table 4: user study on PororoSV (1-5); LoRA-DC is our `lora-dc` method."""
PAPER_TABLE6: dict[str, dict[str, list[float]]] = {
    "Gemini": {"AnyDoor": [8.0, 8.0, 8.0, 7.0, 5.0], "StoryAgent": [7.0, 8.0, 8.0, 7.0, 5.0],
               "GT": [5.0, 4.0, 8.0, 9.0, 9.0]},
    "GPT-4o": {"AnyDoor": [6.0, 4.0, 4.0, 4.5, 3.5], "StoryAgent": [6.0, 4.5, 3.5, 3.5, 3.5],
               "GT": [6.0, 4.0, 3.5, 3.5, 3.5]},
    "LAION aesthetic predictor": {"AnyDoor": [3.78, 4.03, 3.28, 4.03, 3.58], "StoryAgent": [3.88, 4.17, 3.59, 3.47, 3.90],
                                  "GT": [3.95, 4.10, 3.94, 3.73, 4.02]},
}
"""Table 6: storyboard scores (1-10) of three observer functions on five PororoSV cases."""
PAPER_PROTOCOL: dict[str, Any] = {
    "PororoSV_characters": 5,
    "FlintstonesSV_characters": 4,
    "characters_named_in_figures": {
        "PororoSV": ["Pororo", "Crong", "Eddy", "Loopy", "Poby"],
        "FlintstonesSV": ["Wilma", "Betty"],
    },
    "training_set": "reference videos for each subject from one episode",
    "test_set": "10 samples per subject, each of 4 shots highly relevant to the subject",
    "initial_storyboard": ("the first frame of each ground-truth video with the subject removed; the storyboard "
                           "generator redraws it; the video creator animates it"),
    "open_domain": "8 subjects collected from YouTube and open-source sites; stories generated with ChatGPT; no ground truth",
    "baselines_table1": ("SVD and TI-SparseCtrl (SparseCtrl + Textual Inversion), both animating storyboards from the "
                         "StoryAgent storyboard generator"),
}
"""What Sec. 4 states of the protocol (the split files cite it; what it leaves open they assume)."""
PAPER_IMPLEMENTATION: dict[str, str] = {
    "StoryAnyDoor": ("AnyDoor fine-tuned on the subject: Adam, initial learning rate 1e-5, 20,000 steps; 4-5 reference "
                     "videos of 1-2 s per subject"),
    "LoRA-BE": ("DynamiCrafter base; only LoRA parameters and block-wise token embeddings trained; Adam, learning rate "
                "1e-4, 400 epochs; 16 cross-attention modules, one token embedding per module per subject token"),
    "hardware": "one NVIDIA V100",
    "observer_in_experiments": "bypassed (Appendix A.5)",
}

_CAPTIONS = {
    "table1": "Comparison results of storytelling video generation on PororoSV and FlintstonesSV datasets.",
    "table5": ("Ablation studies of video generation on PororoSV and FlintstonesSV datasets. DC-finetuning: "
               "DynamiCrafter's image injection module fine-tuned on the reference videos, without LoRA-BE."),
    "table2": ("Comparison results of storytelling video generation on the open-domain dataset (8 subjects, stories "
               "written by ChatGPT; metrics as in EvalCrafter, Liu et al. 2023)."),
    "table6": "Scores (1-10) of storyboards by three observer functions, five cases.",
}


def _values(rows: dict[str, Row]) -> dict[str, list[float]]:
    return {method: list(row.values()) for method, row in rows.items()}


def paper_tables_json() -> dict[str, Any]:
    """The constants above in `../shared/paper/tables.json`'s layout (the test compares the two)."""
    better = {"FVD": "lower", "SSIM": "higher", "PSNR": "higher", "LPIPS": "lower"}
    return {
        "source": PAPER_SOURCE,
        "table1_reference_metrics": {"caption": _CAPTIONS["table1"], "columns": list(REFERENCE_COLUMNS),
                                     "better": better,
                                     "rows": {ds: _values(rows) for ds, rows in PAPER_TABLE1.items()}},
        "table5_ablation": {"caption": _CAPTIONS["table5"], "columns": list(REFERENCE_COLUMNS),
                            "rows": {ds: _values(rows) for ds, rows in PAPER_TABLE5.items()}},
        "table2_open_domain_non_reference_metrics": {
            "caption": _CAPTIONS["table2"],
            "better": {"IS": "higher", "CLIP-score": "higher", "CLIP-temp": "higher", "Warping error": "lower",
                       "Flow-score": "neutral"},
            "columns": list(OPEN_DOMAIN_COLUMNS), "rows": _values(PAPER_TABLE2)},
        "table3_user_study_open_domain": {"columns": list(USER_STUDY_COLUMNS), "scale": "1-5, 14 valid responses",
                                          "rows": _values(PAPER_TABLE3)},
        "table4_user_study_pororo": {"columns": list(USER_STUDY_COLUMNS), "rows": _values(PAPER_TABLE4)},
        "table6_observer_scores_pororo": {"caption": _CAPTIONS["table6"], "rows": PAPER_TABLE6},
        "protocol": PAPER_PROTOCOL,
        "implementation": PAPER_IMPLEMENTATION,
    }


# ---- our methods against the paper's rows -------------------------------------------------------

PAPER_ROW: dict[str, tuple[str, ...]] = {
    "storyagent": ("Table 1: StoryAgent", "Table 5: StoryAgent"),
    "dc-finetuning": ("Table 5: DC-finetuning",),
}
"""`eval dataset --method` -> the paper's rows of the same method (Table: row)."""
NO_PAPER_ROW = {
    "lora-dc": ("Table 4's LoRA-DC (DynamiCrafter + LoRA without block-wise embeddings): the paper reports it in "
                "its PororoSV user study only, not in Tables 1 or 5"),
    "anydoor": "stock AnyDoor + stock DynamiCrafter: not a row of the paper's Tables 1 or 5",
    "animatic": "the CPU floor (remove, paste, hold still): not a method of the paper",
}


def paper_rows(dataset: str, table: int = 1) -> list[dict[str, object]]:
    """The paper's rows of Table 1 or 5 for `dataset` (pororo / flintstones), as report rows."""
    rows = (PAPER_TABLE1 if table == 1 else PAPER_TABLE5).get(DATASET_NAMES.get(dataset, dataset), {})
    return [{"Method": name, "Source": f"paper, Table {table}", **values} for name, values in rows.items()]


def paper_table2_rows() -> list[dict[str, object]]:
    """The paper's Table 2 (open domain) as `eval compare` rows, under `eval film`'s column names."""
    return [{"Method": name, "Source": "paper, Table 2 (open domain)",
             **{TABLE2_COLUMN[c]: v for c, v in values.items()}} for name, values in PAPER_TABLE2.items()]


def _number(value: object) -> float:
    return float(value) if isinstance(value, (int, float)) else math.nan


def write_dataset_report(result: DatasetEval, out_dir: str | os.PathLike[str], method_key: str = "",
                         split_path: Path | None = None, protocol: str = "", assumptions: list[str] | None = None,
                         weights: list[str] | None = None, paper_facts: list[str] | None = None) -> list[Path]:
    """Markdown + CSV tables (ours beside the paper's Table 1 and Table 5 rows, per character, per
    shot), a plot per metric, results.json."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    name = DATASET_NAMES.get(result.dataset, result.dataset)
    ours = {"Method": f"{result.method} (this run)", "Source": "this run", **{m: result.summary.get(m) for m in METRICS}}
    matched = PAPER_ROW.get(method_key)
    notes = [
        f"Protocol: {protocol}" if protocol else "Protocol: the paper's Sec. 4 (see the split file).",
        *(f"Stated by the paper: {fact}" for fact in (paper_facts or [])),
        *(f"Split assumption (the paper leaves it open): {a}" for a in (assumptions or [])),
        f"Frames compared: {result.geometry}.",
        f"Split: {split_path}." if split_path else "Split: the one shipped with StoryAgent.",
        "Weights: " + (", ".join(weights or result.weights) or "none (CPU baseline)") + ".",
        (f"The paper's rows of this method: {', '.join(matched)}." if matched
         else f"This method: {NO_PAPER_ROW.get(method_key, 'not a row of the paper')}."),
        f"Paper values: {CITE}, Tables 1 and 5, as transcribed in storyagent/eval/paper_tables.py.",
        "PSNR of identical frames is infinite (printed ∞), not capped.",
        *(f"{m}: {v}" for m, v in result.summary.items() if isinstance(v, str)),
        *result.notes,
    ]
    written = list(write_tables(paper_rows(result.dataset, 1) + [ours], ["Source", *METRICS], "Method",
                                out / "table1", f"{name}: comparison with the ground truth (paper's Table 1)",
                                notes, bold_best=False))
    written += write_tables(paper_rows(result.dataset, 5) + [ours], ["Source", *METRICS], "Method", out / "table5",
                            f"{name}: video-generation ablation (paper's Table 5)", notes, bold_best=False)
    present = [m for m in ("SSIM", "PSNR", "LPIPS") if all(m in r for r in result.rows)]
    written += write_tables(result.per_character, ["Training episode", "Samples", "Shots", *present], "Character",
                            out / "per_character",
                            f"{name}: per character ({result.method})", bold_best=False)
    written += write_tables(result.rows, ["Character", "Sample", *present], "Clip", out / "shots",
                            f"{name}: per shot ({result.method})", bold_best=False)
    groups = [str(r["Character"]) for r in result.per_character] + ["all"]
    paper_by_method = {f"paper: {m}": values for m, values in PAPER_TABLE1.get(name, {}).items()}
    paper_by_method |= {f"paper: {m}": values for m, values in PAPER_TABLE5.get(name, {}).items()}
    for metric in METRICS:
        if metric == "FVD":
            series = {result.method: [_number(result.summary.get("FVD"))]}
            labels = ["all"]
        else:
            series = {result.method: [_number(r.get(metric)) for r in result.per_character]
                      + [_number(result.summary.get(metric))]}
            labels = groups
        # The paper's numbers are over all characters: bars in the "all" group only.
        for label, values in paper_by_method.items():
            series[label] = [math.nan] * (len(labels) - 1) + [values[metric]]
        written.append(bar_plot(labels, series, f"{name}: {metric}", metric, out / f"{metric.lower()}.png"))
    results = out / "results.json"
    atomic_write_json(results, {"method": result.method, "dataset": result.dataset, "summary": result.summary,
                                "per_character": result.per_character, "rows": result.rows,
                                "geometry": result.geometry, "notes": notes,
                                "paper": {"table1": PAPER_TABLE1.get(name, {}), "table5": PAPER_TABLE5.get(name, {}),
                                          "rows_of_this_method": list(matched or ())}})
    written.append(results)
    return written
