"""The store's schema: its tables as a new store gets them, and the migrations that take an older store there."""

APPLICATION_ID = 0x434E4E42  # "CNNB": marks the file as a cnnbench database
SCHEMA_VERSION = 10

SCHEMA = """
CREATE TABLE runs (
    id TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,          -- ISO 8601, UTC
    finished_at TEXT,
    status TEXT NOT NULL,              -- running | completed | interrupted | failed
    command TEXT NOT NULL,             -- the command line, as typed
    dataset TEXT NOT NULL,
    input_shape TEXT NOT NULL,         -- JSON [C, H, W]
    classes TEXT NOT NULL,             -- JSON list of class names
    split TEXT NOT NULL,               -- JSON {"train": n, "val": n, "test": n}
    seed INTEGER NOT NULL,
    config TEXT NOT NULL,              -- JSON: every option the sweep was run with
    environment TEXT NOT NULL          -- JSON: versions, CPU, GPU, threads, device
);
CREATE TABLE trials (
    id INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL REFERENCES runs(id),
    idx INTEGER NOT NULL,              -- 1-based position in the run's plan
    architecture TEXT NOT NULL,
    plugin TEXT NOT NULL,
    variant TEXT NOT NULL,             -- JSON: the architecture's parameters
    hparams TEXT NOT NULL,             -- JSON: batch_size, lr, epochs, optimizer, momentum, weight_decay,
                                       --   seed, val_ratio, select
    split TEXT,                        -- JSON {"train": n, "val": n, "test": n}
    status TEXT NOT NULL,              -- pending | running | completed | early_stopped | pruned | diverged
                                       --   | failed | interrupted
    note TEXT,                         -- why a trial diverged or failed
    params INTEGER,                    -- trainable parameters
    epochs_run INTEGER,
    best_epoch INTEGER,
    train_loss REAL, train_acc REAL,   -- of the best checkpoint, in eval mode
    val_loss REAL, val_acc REAL,
    test_loss REAL, test_acc REAL,
    confusion TEXT,                    -- JSON test confusion matrix, rows = true class
    checkpoint TEXT,                   -- path relative to the store's folder
    checkpoint_sha256 TEXT,
    started_at TEXT,
    finished_at TEXT,
    duration_s REAL,                   -- wall time of the trial: build, training, final evaluation
    UNIQUE (run_id, idx)
);
CREATE TABLE epochs (
    trial_id INTEGER NOT NULL REFERENCES trials(id),
    epoch INTEGER NOT NULL,
    train_loss REAL, train_acc REAL, val_loss REAL, val_acc REAL,
    time_s REAL,
    PRIMARY KEY (trial_id, epoch)
);
CREATE INDEX trials_run ON trials(run_id);
"""

# MIGRATIONS[n] takes a store from schema n + 1 to n + 2; a store is only extended, never emptied (a table whose
# key changes is copied into its new form, every row kept).
# Statements are split on semicolons: keep them out of the comments.
MIGRATIONS = [
    """
ALTER TABLE trials ADD COLUMN flops INTEGER;  -- forward FLOPs per image, by torch's flop counter
CREATE TABLE exports (
    trial_id INTEGER PRIMARY KEY REFERENCES trials(id),
    status TEXT NOT NULL,              -- ok | export_failed | parity_failed
    note TEXT,                         -- why it failed
    path TEXT,                         -- model.onnx, relative to the store's folder
    sha256 TEXT,
    size_bytes INTEGER,
    exporter TEXT,                     -- e.g. "torch.onnx dynamo (torch 2.14.1)"
    opset INTEGER,
    tolerance REAL,                    -- allowed max |logit difference| against PyTorch
    parity_images INTEGER,             -- real test images compared
    max_abs_diff REAL,
    top1_agreement REAL,               -- share of those images with the same top-1 class
    torch_test_acc REAL,               -- the checkpoint's test accuracy in PyTorch
    onnx_test_acc REAL,                -- the same test set through onnxruntime (CPU)
    flops INTEGER,                     -- forward FLOPs per image (torch's flop counter)
    exported_at TEXT
);
CREATE TABLE latency (
    id INTEGER PRIMARY KEY,
    trial_id INTEGER NOT NULL REFERENCES trials(id),
    engine TEXT NOT NULL,              -- onnxruntime | torch
    provider TEXT NOT NULL,            -- CPUExecutionProvider, CUDAExecutionProvider, cpu, cuda
    batch_size INTEGER NOT NULL,
    status TEXT NOT NULL,              -- ok | unavailable | failed
    note TEXT,                         -- why a provider was unavailable
    session_ms REAL,                   -- session creation (onnxruntime) / model transfer (torch)
    first_ms REAL,                     -- the first inference, apart from the steady state
    warmup INTEGER,
    n INTEGER,                         -- timed runs
    total_s REAL,
    p50_ms REAL, p90_ms REAL, p99_ms REAL, mean_ms REAL, std_ms REAL, min_ms REAL, max_ms REAL,
    throughput REAL,                   -- images per second: batch_size / mean latency
    samples TEXT,                      -- JSON: every timed run, in ms, in order
    method TEXT,                       -- JSON: percentile method, threads, graph optimization, io binding...
    measured_at TEXT,
    UNIQUE (trial_id, engine, provider, batch_size)
);
""",
    """
ALTER TABLE epochs ADD COLUMN lr REAL;         -- learning rate of the epoch's first step
ALTER TABLE epochs ADD COLUMN elapsed_s REAL;  -- training seconds up to the end of this epoch (no validation)
""",
    """
CREATE TABLE owners (                  -- the one live process running a run (bench run, bench run --resume)
    run_id TEXT PRIMARY KEY REFERENCES runs(id),
    pid INTEGER NOT NULL,
    host TEXT NOT NULL,
    process_start TEXT NOT NULL,       -- the kernel's start time of pid (Linux), so a reused pid is not the owner
    since TEXT NOT NULL,
    heartbeat REAL NOT NULL            -- Unix time, renewed while the owner runs
);
""",
    """
CREATE TABLE variants (                -- int8 and fp16 models made from a trial's verified fp32 ONNX export
    trial_id INTEGER NOT NULL REFERENCES trials(id),
    precision TEXT NOT NULL,           -- int8 | fp16
    status TEXT NOT NULL,              -- ok | flagged (lost more accuracy than allowed, kept) | failed
    note TEXT,                         -- why it failed or was flagged, or what it fell back to
    path TEXT,                         -- model-<precision>.onnx, relative to the store's folder
    sha256 TEXT,
    size_bytes INTEGER,
    test_acc REAL,                     -- the whole test set through onnxruntime (CPU)
    fp32_test_acc REAL,                -- the fp32 export's, measured the same way
    top1_agreement REAL,               -- share of the test images whose top-1 class matches the fp32 model's
    max_accuracy_drop REAL,            -- the allowed loss in points, against which status was judged
    method TEXT,                       -- JSON: tool, format, calibration, operators left in float
    created_at TEXT,
    PRIMARY KEY (trial_id, precision)
);
CREATE TABLE latency_v5 (
    id INTEGER PRIMARY KEY,
    trial_id INTEGER NOT NULL REFERENCES trials(id),
    precision TEXT NOT NULL DEFAULT 'fp32',  -- of the model measured: fp32 (the export, or PyTorch), int8, fp16
    engine TEXT NOT NULL,
    provider TEXT NOT NULL,
    batch_size INTEGER NOT NULL,
    status TEXT NOT NULL,
    note TEXT,
    session_ms REAL,
    first_ms REAL,
    warmup INTEGER,
    n INTEGER,
    total_s REAL,
    p50_ms REAL, p90_ms REAL, p99_ms REAL, mean_ms REAL, std_ms REAL, min_ms REAL, max_ms REAL,
    throughput REAL,
    samples TEXT,
    method TEXT,
    measured_at TEXT,
    UNIQUE (trial_id, precision, engine, provider, batch_size)
);
INSERT INTO latency_v5 (id, trial_id, engine, provider, batch_size, status, note, session_ms, first_ms,
    warmup, n, total_s, p50_ms, p90_ms, p99_ms, mean_ms, std_ms, min_ms, max_ms, throughput, samples, method,
    measured_at)
SELECT id, trial_id, engine, provider, batch_size, status, note, session_ms, first_ms, warmup, n, total_s, p50_ms,
    p90_ms, p99_ms, mean_ms, std_ms, min_ms, max_ms, throughput, samples, method, measured_at
FROM latency;
DROP TABLE latency;
ALTER TABLE latency_v5 RENAME TO latency;
""",
    """
ALTER TABLE epochs ADD COLUMN load_before REAL;  -- 1-minute load average as the epoch started
ALTER TABLE epochs ADD COLUMN load_after REAL;
ALTER TABLE epochs ADD COLUMN others_cpu REAL;   -- cores other processes used during the epoch, on average
ALTER TABLE epochs ADD COLUMN noisy INTEGER;     -- 1: others wanted more CPU than it left free (bench.core.noise)
CREATE TABLE latency_v6 (
    id INTEGER PRIMARY KEY,
    trial_id INTEGER NOT NULL REFERENCES trials(id),
    precision TEXT NOT NULL DEFAULT 'fp32',
    engine TEXT NOT NULL,
    provider TEXT NOT NULL,
    batch_size INTEGER NOT NULL,
    repeat INTEGER NOT NULL DEFAULT 1,     -- the repetition (bench benchmark --repeat N), every one kept
    status TEXT NOT NULL,
    note TEXT,
    session_ms REAL,
    first_ms REAL,
    warmup INTEGER,
    n INTEGER,
    total_s REAL,
    p50_ms REAL, p90_ms REAL, p99_ms REAL, mean_ms REAL, std_ms REAL, min_ms REAL, max_ms REAL,
    throughput REAL,
    spread REAL,                           -- p99 / p50
    cv REAL,                               -- standard deviation / mean
    load_before REAL, load_after REAL,     -- 1-minute load average around the timed runs
    others_cpu REAL,                       -- cores other processes used meanwhile, on average
    noisy INTEGER,                         -- 1: beyond bench.core.noise's thresholds
    samples TEXT,
    method TEXT,
    measured_at TEXT,
    UNIQUE (trial_id, precision, engine, provider, batch_size, repeat)
);
INSERT INTO latency_v6 (id, trial_id, precision, engine, provider, batch_size, status, note, session_ms, first_ms,
    warmup, n, total_s, p50_ms, p90_ms, p99_ms, mean_ms, std_ms, min_ms, max_ms, throughput, samples, method,
    measured_at)
SELECT id, trial_id, precision, engine, provider, batch_size, status, note, session_ms, first_ms, warmup, n, total_s,
    p50_ms, p90_ms, p99_ms, mean_ms, std_ms, min_ms, max_ms, throughput, samples, method, measured_at
FROM latency;
DROP TABLE latency;
ALTER TABLE latency_v6 RENAME TO latency;
""",
    """
ALTER TABLE latency ADD COLUMN peak_rss_mb REAL;  -- growth of the process's peak resident memory: load and runs
CREATE TABLE evaluations (             -- the test accuracy each engine gives at each precision, on the CPU
    trial_id INTEGER NOT NULL REFERENCES trials(id),
    engine TEXT NOT NULL,
    precision TEXT NOT NULL,
    status TEXT NOT NULL,              -- ok | unavailable | failed
    note TEXT,
    test_acc REAL,                     -- over the whole test set
    top1_agreement REAL,               -- with PyTorch's fp32 model, image by image
    images INTEGER,
    method TEXT,                       -- JSON: what the engine recorded (version, precision hint, how it quantized)
    evaluated_at TEXT,
    PRIMARY KEY (trial_id, engine, precision)
);
""",
    """
ALTER TABLE runs ADD COLUMN data TEXT;  -- JSON: what the data was (fingerprint, images per part, normalization)
""",
    """
ALTER TABLE runs ADD COLUMN deploy_s REAL;        -- wall seconds the run spent deploying its winners (all calls)
ALTER TABLE runs ADD COLUMN deployed_trials INTEGER;  -- the winners those seconds deployed
ALTER TABLE runs ADD COLUMN name TEXT;            -- the user's name for the run (bench run --name), unique
CREATE UNIQUE INDEX runs_name ON runs(name);
""",
    """
CREATE TABLE serving (                 -- serving scenarios (bench.runtime.scenarios): one row per configuration
    trial_id INTEGER NOT NULL REFERENCES trials(id),
    scenario TEXT NOT NULL,            -- single-stream | offline | server
    setup TEXT NOT NULL,               -- the server's workers and dynamic batching, in words ('' for the others)
    engine TEXT NOT NULL,
    provider TEXT NOT NULL,
    precision TEXT NOT NULL,
    repeat INTEGER NOT NULL,           -- 1, 2...: each in its own worker process (--repeat)
    status TEXT NOT NULL,              -- ok | unavailable | failed
    note TEXT,
    result TEXT,                       -- JSON: the scenario's figures (percentiles, images/s, max QPS, rates tried)
    method TEXT,                       -- JSON: what the engine recorded, threads, queries, bound
    measured_at TEXT,
    PRIMARY KEY (trial_id, scenario, setup, engine, provider, precision, repeat)
);
""",
]

JSON_COLUMNS = {
    "input_shape",
    "data",
    "classes",
    "split",
    "config",
    "environment",
    "variant",
    "hparams",
    "confusion",
    "samples",
    "method",
    "result",
}
