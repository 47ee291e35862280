"""Training, split by job: `assemble` (config → data, model, method, optimiser; also what evaluation and figures
use to build a model, without the loop), `fit` (the epoch loop with exact resume), `retain` (which checkpoints
a selection rule could still pick) and `finish` (the final evaluation: keyed evaluations of the checkpoints a
table declares). `bench.train.train_run` chains them."""
