"""The names the pipeline's runs carry in MLflow, written once: tags, and the metrics that
more than one module reads (evaluate writes them, the sweep report, the registry and
`reproduce` read them). A per-epoch metric keeps its history column's name (`val_accuracy`,
`train_val_gap`: Keras' and the training engine's, in `reports/history.csv`)."""

# Tags on a training's run
STAGE = "dvc_stage"  # the DVC stage that opened the run (`dvc repro`, `dvc exp run`)
ERROR = "error"  # on a FAILED or KILLED run: what went wrong
OWNER_HOST, OWNER_PID = "pipeline.host", "pipeline.pid"  # the process that opened the run
RAY_NODE = "pipeline.ray_node"
DVC_EXP_NAME, DVC_BASELINE = "dvc_exp_name", "dvc_exp_baseline_rev"  # a `dvc exp run`'s
PARENT = "mlflow.parentRunId"  # MLflow's own: the sweep a job's run belongs to
WEIGHTS = "weights_digest"
COMMIT = "mlflow.source.git.commit"  # MLflow's own
DIRTY = "git_dirty"
FINGERPRINT = "data_fingerprint"
ENV_PREFIX = "env."  # one tag per environment fact: env.keras_backend, env.cpu, ...
CHECKPOINT_FROM = "checkpoint_from_epoch"  # 0 from scratch, `off` without the cache
CHECKPOINT_KEY = "checkpoint_key"
ONSET_TAG = "overfitting_onset"  # the epoch overfitting starts, or `none`
CONFIGURATION = "configuration"  # every param but the seed, as a short digest: replicates share it
JOB_KEY = (
    "job_key"  # all that decides a job's results (`pipeline.config.jobs`): a job done is reused
)
FAMILY = "model_family"  # on a registered version: its model's family (`model.family`)
DUPLICATE_OF = "duplicate_of"  # on a run of a job another run of the same key did first

# Tags `reproduce` sets
REPRODUCES = "reproduces"  # on a reproduction: the run it rebuilt
VERDICT = "reproduced"  # on the original and the reproduction: identical, equivalent, diverged
REPRODUCED_BY = "reproduced_by"  # on the original: the reproduction's run id

# Tags of a sweep
SWEEP = "sweep"  # "parent" on a sweep's parent run
SWEEP_DIR = "sweep_dir"  # on the parent: the sweep's folder
BEST_IN_SWEEP = "best_in_sweep"  # "true" on the child with the highest validation accuracy
BEST_RUN_ID = "best_run_id"  # on the parent: that child's run id
REUSED_PREFIX = "reused."  # on the parent, `reused.<run id>`: a done job it counts, not rerun
LAUNCHER = "sweep_launcher"  # on the parent: `hydra`, or `dvc-queue` for `dvc exp run --queue`
NOTE = "mlflow.note.content"  # MLflow's own: the run's description (the sweep report)

# Tags of an experiment and a model version
EXPERIMENT_KIND = "mlflow.experimentKind"  # MLflow's own: which view its UI opens
VERSION_VAL_ACCURACY = "val_accuracy"  # on a registered version: its validation accuracy
VALIDATION_DIGITS = "validation_digits"  # on a version: which digits it was validated on
REPLICATE_VAL_ACCURACIES = "replicate_val_accuracies"  # on a version: its configuration's seeds
PROMOTION_PREFIX = "promotion."  # on a version: decision, test, effect, p_value, against, line

# Metrics of a training's run (and keys of reports/metrics.json)
TEST_ACCURACY, TEST_LOSS = "test_accuracy", "test_loss"
TRAIN_ACCURACY, VAL_ACCURACY = "train_accuracy", "val_accuracy"
TRAIN_ACCURACY_EVALUATED = "train_accuracy_evaluated"  # the final model on its training digits
TRAIN_TEST_GAP = "overfitting_gap"  # Keras' running train accuracy - test accuracy
TRAIN_TEST_GAP_EVALUATED = (
    "overfitting_gap_evaluated"  # the final model's train accuracy - test accuracy
)
BEST_VAL_LOSS_EPOCH, BEST_VAL_ACCURACY_EPOCH = "best_val_loss_epoch", "best_val_accuracy_epoch"
ONSET = "overfitting_onset_epoch"
EPOCHS_TRAINED, KEPT_EPOCH = "epochs_trained", "kept_epoch"
KEPT_VAL_ACCURACY = "kept_val_accuracy"  # its epoch's val_accuracy, one number: on the model
# A metric's 95% interval: `test_accuracy` has `test_accuracy_ci_low` and `test_accuracy_ci_high`
CI_LOW, CI_HIGH = "_ci_low", "_ci_high"
# Over a configuration's replicates (a sweep's parent run): `val_accuracy_mean`, `..._sd`, ...
MEAN, SD = "_mean", "_sd"

# Metrics of a reproduction: the equivalence test's p-value (exact McNemar on the test digits)
MCNEMAR_P_VALUE = "mcnemar_p_value"

# Metrics of a sweep's parent run
BEST_VAL_ACCURACY, BEST_TEST_ACCURACY = "best_val_accuracy", "best_test_accuracy"
JOBS, JOBS_RUN, JOBS_REUSED, JOBS_FAILED = "jobs", "jobs_run", "jobs_reused", "jobs_failed"
CONFIGURATIONS = "configurations"  # a sweep parent's metric: how many its jobs form
