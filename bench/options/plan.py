"""What to train, the run's plan (a resume keeps it): the plugins and architectures, their variants, the dataset
and the search."""

from __future__ import annotations

from dataclasses import dataclass

from bench.options.choices import PLAN, PRUNERS, SEARCHES, VARIANT_SETS
from bench.options.option import COUNT, POSITIVE, declare


@dataclass
class PlanOptions:
    """What to train: RunConfig (bench.options.config) is made of these fields and the other stages'."""

    plugin: list[str] = declare(PLAN, "Run every architecture of this plugin.", factory=list, repeat=True, short="-p")
    arch: list[str] = declare(
        PLAN, "Run architectures whose name matches this pattern (e.g. 'cnn_*').", factory=list, repeat=True, short="-a"
    )
    variants: str = declare(
        PLAN, "The plugin's default variant set, or its whole variant space.", "default", choices=VARIANT_SETS
    )
    where: dict[str, list] = declare(
        PLAN,
        "Keep variants whose PARAM is one of the values, e.g. --where kernel_size=3,5. Replaces a --config "
        "file's filter for the parameters it names only.",
        factory=dict,
        kind=dict,
        repeat=True,
        metavar="PARAM=V[,V...]",
        docs="Of the default variants, or of the whole space when none of them has the "
        "values; across several architectures, each keeps the values it has (`--where model=resnet18,mobilenet_v2` "
        "over the torchvision zoo), one with the parameter but none of the values is left out, one without the "
        "parameter is not filtered by it (`--arch resnet --arch fast_cnn --where depth=8`: resnet's depth-8 "
        "variant and fast_cnn's own), each said in a note; a value none of them has is an error.",
    )
    per_arch: dict[str, dict] = declare(
        PLAN,
        "How one architecture's trials train, over the run's options: e.g. --per-arch fast_cnn:lr=0.4 --per-arch "
        "fast_cnn:batch_size=256,512.",
        factory=dict,
        kind=dict,
        repeat=True,
        nested=True,
        metavar="ARCH:OPTION=V[,V...]",
        docs="Any option of the training table below; its values replace the run's (and the plugin's defaults) for "
        "that architecture only, an axis given there being that architecture's grid. In a `--config` file: a table "
        "per architecture, `[per_arch.fast_cnn]` with `lr = 0.4`.",
    )
    dataset: str = declare(PLAN, "Dataset name, or imagefolder:PATH (see `bench datasets`).", "digits", short="-d")
    data_dir: str | None = declare(PLAN, "Where the dataset's files are (default: ./data).", loads_data=True)
    image_size: int | None = declare(
        PLAN,
        "imagefolder: resize images to this size (default: their own size; a folder of mixed sizes: the most common "
        "one, said in the dataset's resize record).",
        kind=int,
        low=4,
        high=2048,
        loads_data=True,
    )
    limit_train: int | None = declare(
        PLAN,
        "Train (and validate) on a seeded, stratified subset of this many of the training images; the test part "
        "stays whole.",
        kind=int,
        low=2,
        loads_data=True,
    )
    mean: list[float] | None = declare(
        PLAN,
        "Replace the dataset's per-channel mean (after scaling).",
        kind=float,
        many=True,
        unique=False,
        loads_data=True,
    )
    std: list[float] | None = declare(
        PLAN,
        "Replace its per-channel std.",
        kind=float,
        many=True,
        unique=False,
        **POSITIVE,
        loads_data=True,
    )
    search: str = declare(
        PLAN,
        "grid: every combination; random: --trials of them drawn without repeats; tpe: --trials chosen one after "
        "the other by Optuna's TPE sampler from the results so far (pip install 'cnnbench[optuna]'). Seeded by the "
        "first --seed.",
        "grid",
        choices=SEARCHES,
        docs="TPE chooses among the same combinations a grid would run (the variants, and the values given for each "
        "axis), after the selection metric of `--select` (lowest validation loss, or highest accuracy); its study "
        "is kept with the run (`study.log` in the "
        "run's folder), so `--resume` continues it.",
    )
    trials: int | None = declare(PLAN, "With --search random or tpe: how many trials.", **COUNT)
    pruner: str = declare(
        PLAN,
        "With --search tpe: stop a trial whose selection metric after an epoch (the second or later) is worse than "
        "the median of earlier trials at that epoch (median), or outside the best third of its rung (halving: "
        "successive halving); recorded as pruned.",
        "none",
        choices=PRUNERS,
    )
