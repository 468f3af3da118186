"""The paper's experiments: training with its protocol, evaluation, the Table 1 grid, figures, the SNR study.

- :mod:`~iwae_np.experiments.schedule`: the learning-rate schedule of section 5;
- :mod:`~iwae_np.experiments.training`: :func:`train_step`, :class:`TrainConfig`, :func:`train`;
- :mod:`~iwae_np.experiments.checkpoints`: checkpoints and exact resume;
- :mod:`~iwae_np.experiments.evaluation`: :math:`\\mathcal L_{5000}`, active units, a run's evaluation;
- :mod:`~iwae_np.experiments.cells`: one cell of the Table 1 grid: its settings, and how it trains and is evaluated;
- :mod:`~iwae_np.experiments.table`: the grid's cells in local processes, and the table beside the paper's numbers;
- :mod:`~iwae_np.experiments.paper`: the paper's published numbers (Tables 1 and 3);
- :mod:`~iwae_np.experiments.progress`: the running cells' progress, every half minute in a terminal;
- :mod:`~iwae_np.experiments.claims`: the paper's claims tested on a finished table (paired over test images);
- :mod:`~iwae_np.experiments.cluster`: the grid on a Dask cluster, each cell a task (``table --scheduler``);
- :mod:`~iwae_np.experiments.figures`: PNG figures;
- :mod:`~iwae_np.experiments.snr`: the gradient signal-to-noise study of Rainforth et al. (2018).
"""
from .checkpoints import (CHECKPOINT_NAME, CheckpointError, CheckpointWriteError, load_checkpoint, load_params,
                          save_checkpoint)
from .claims import claims_report, paired_difference, table_claims
from .evaluation import EVALUATION_NAME, active_units, evaluate_run, iwae_log_likelihood
from .schedule import paper_schedule
from .cells import table_cells
from .paper import PAPER_TABLE1, PAPER_TABLE3
from .table import markdown_table, run_table
from .training import METRICS_NAME, NonFiniteLossError, TrainConfig, train, train_step

__all__ = ["CHECKPOINT_NAME", "CheckpointError", "CheckpointWriteError", "claims_report", "paired_difference",
           "table_claims", "load_checkpoint", "load_params", "save_checkpoint",
           "EVALUATION_NAME", "active_units", "evaluate_run", "iwae_log_likelihood", "paper_schedule",
           "PAPER_TABLE1", "PAPER_TABLE3", "markdown_table", "run_table", "table_cells", "METRICS_NAME",
           "NonFiniteLossError", "TrainConfig", "train", "train_step"]
