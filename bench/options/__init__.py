"""The options of a run, each declared once: a field of `RunConfig` with its type, choices, range, help and stage.

Everything else follows from that declaration: the options of `bench run` (and of `bench export`, `benchmark`,
`quantize`), the keys a `--config` file may set, the one check that the CLI, config files and the Python API share
(with one spelling of its error), the hyperparameters every trial records (`HParams`: the fields of the
``train`` stage), the plan's fixed parameters, the report's parameter columns and docs/run-options.md.
A new option is one field plus its use (CONTRIBUTING.md shows the diff).

    choices.py   the words and limits options are declared with, the stage and group names
    option.py    Option: how one option is given, checked and documented; invalid(): the one error spelling
    plan.py, train.py, execute.py, deploy.py    the options of each stage
    config.py    RunConfig (every stage's options), and what follows from the declarations
    per_arch.py  --per-arch: one architecture's training options
    hparams.py   HParams: one trial's hyperparameters
    docs.py      docs/run-options.md (python -m bench.options)

No torch here: `bench --help` and config files load this package alone."""
