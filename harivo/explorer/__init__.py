"""What the ablation explorer (`app.py`) does, without any UI, one module per part:

- `models`    finding and caching models (`ModelRegistry`), what each can do, known words, example prompts;
- `request`   the app's request (`RunRequest`: the flat generation settings + model and fps) and its checks;
- `runs`      one run (`run_generation` → `RunResult`, the per-user state), cancel flags, the download bundle;
- `views`     the pictures of one result (attention maps, Fig. 6 slice stacks, CFG schedule, MG diagnostics)
              and the summary, all read from the settings in effect that the result records;
- `ablation`  A-vs-B runs and the ablation grid (Table 1 variants + MG of the chosen model's family, or
              α ∈ {0, 40, 150} as Fig. 6c);
- `fields`    the app's inputs: labels, accepted ranges, and `check_values` (one message for a refused value);
- `specs`     the real models beside the embedded ones: `python app.py`'s flags and YAML model list;
- `cost`      what a run will cost, said before it runs (work, weights, a time estimate from the last run).

Usable from a notebook:

    reg = ModelRegistry()                       # checkpoints/ (or $HARIVO_CHECKPOINTS); tiny random fallback
    res = run_generation(reg, RunRequest(prompt="a red circle is moving up on a gray background"))
    views = render_views(res)                   # dict of uint8 images
    python -m harivo.explorer ablation --mode alpha --out assets/ablation   # PNG + PDF figure

Per-user state is a `RunResult` (held by the app in `gr.State`); nothing here is module-level mutable state
except the model cache, which is read-only after loading and guarded by locks. The names below are the
explorer's interface for the app and notebooks.
"""

from .ablation import (
    ABLATION_MODES,
    ALPHAS,
    AblationResult,
    Family,
    ablation_plan,
    ablation_rows_text,
    model_family,
    run_ablation,
    run_compare,
    split_variant,
)
from .cost import CostMeter, Measured, cost_note
from .fields import LABELS, MG_VARIANTS, NUMBERS, SIZES, NumberField, check_values, size_info, typed_cost, typed_width
from .models import (
    CHECKPOINTS_ENV,
    EXAMPLE_MAX_CHARS,
    FEATURED_CHECKPOINT,
    MINIATURE_DETAILS,
    MINIATURE_NOTE,
    TINY_KEY,
    TINY_LABEL,
    ModelEntry,
    ModelRegistry,
    example_prompts,
    miniature_note,
    training_note,
)
from .request import REQUEST_SETTINGS, UI_ONLY, RunRequest, check_request, default_request
from .specs import MODELS_ENV, REAL_PREFIX, ModelList, build_parser, models_from_args, read_models
from .runs import BUNDLE_FILES, CancelFlags, RunResult, load_bundle, run_generation
from .views import (
    AUTO_TOKEN,
    FIRST_VIEWS,
    MEAN_SOURCE,
    MEAN_STEP,
    ViewOptions,
    default_columns,
    model_info,
    render_attention,
    render_cfg_schedule,
    render_slices,
    render_views,
    resolve_view,
    run_and_render,
    run_in_stages,
    source_choices,
    step_choices,
    summary,
    token_choices,
)

__all__ = [
    "ABLATION_MODES",
    "ALPHAS",
    "AUTO_TOKEN",
    "FIRST_VIEWS",
    "BUNDLE_FILES",
    "CHECKPOINTS_ENV",
    "EXAMPLE_MAX_CHARS",
    "FEATURED_CHECKPOINT",
    "LABELS",
    "MEAN_SOURCE",
    "MEAN_STEP",
    "MG_VARIANTS",
    "MINIATURE_DETAILS",
    "MINIATURE_NOTE",
    "MODELS_ENV",
    "NUMBERS",
    "REAL_PREFIX",
    "SIZES",
    "TINY_KEY",
    "TINY_LABEL",
    "AblationResult",
    "CancelFlags",
    "CostMeter",
    "Family",
    "Measured",
    "ModelEntry",
    "ModelList",
    "ModelRegistry",
    "NumberField",
    "REQUEST_SETTINGS",
    "RunRequest",
    "UI_ONLY",
    "RunResult",
    "ViewOptions",
    "ablation_plan",
    "ablation_rows_text",
    "build_parser",
    "check_values",
    "check_request",
    "default_request",
    "cost_note",
    "default_columns",
    "example_prompts",
    "load_bundle",
    "miniature_note",
    "model_family",
    "model_info",
    "models_from_args",
    "read_models",
    "render_attention",
    "render_cfg_schedule",
    "render_slices",
    "render_views",
    "resolve_view",
    "run_ablation",
    "run_and_render",
    "run_in_stages",
    "run_compare",
    "run_generation",
    "size_info",
    "source_choices",
    "split_variant",
    "step_choices",
    "summary",
    "token_choices",
    "typed_cost",
    "typed_width",
    "training_note",
]  # fmt: skip
