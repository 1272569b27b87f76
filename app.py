"""HARIVO Explorer: a Gradio app that shows why each HARIVO video looks the way it does.

Layout and event wiring only; everything else is `harivo.explorer` (runs, models, bundles) and `harivo.viz`
(pictures). `python app.py` serves on http://127.0.0.1:7860 with the embedded models and any real ones its flags
or a YAML list name (`python app.py --help`; `harivo/explorer/specs.py`). The documented API endpoint is `/generate`:

    from gradio_client import Client
    video, frames, attention, grid, slices, cfg, mg, flicker, summary, bundle = Client("http://127.0.0.1:7860/").predict(
        prompt="a red circle is moving up on a gray background", seed=0, api_name="/generate")
"""

from __future__ import annotations

import contextlib
import dataclasses
import random

import gradio as gr

from harivo import explorer as ex
from harivo import threads
from harivo.pipeline import SAMPLING_DEFAULTS

MG_VARIANTS = list(ex.MG_VARIANTS)
NUMBERS, LABELS = ex.NUMBERS, ex.LABELS  # each input's label and accepted range: harivo/explorer/fields.py


def Number(name: str, value, high: float | int | None = None, **kwargs) -> gr.Number:  # noqa: N802
    """The field `name` of `harivo.explorer.fields.NUMBERS`: its label, its range under the label, no bounds in
    the component (a gr.Slider or a bounded gr.Number would clamp or refuse a typed value itself, without the
    field's label once an update has copied the component): the handlers refuse a value out of range with the
    label and the range (`ex.check_values`), and nothing changes it behind the visitor's back."""
    f = NUMBERS[name]
    kwargs.setdefault("min_width", 100)  # three to a row in the settings column
    kwargs.setdefault("info", f.span(high))
    return gr.Number(value, label=f.label, step=f.step, precision=None, **kwargs)


def _checked_by_handler(component):
    """A Radio or Dropdown that passes an unknown choice on to the handler, which refuses it naming the field
    (`ex.check_values`) instead of Gradio's 'Value: ... is not in the list of choices' (wraps the instance's
    preprocess: a subclass of a Gradio component would make Gradio write a type stub, app.pyi, next to this file;
    these components are never updated, so no session copy drops the wrapper)."""
    component.preprocess = lambda payload: payload
    return component


# Gradio 6.31 ships IBM Plex Sans SemiBold (weight 600: titles, buttons) as a Cyrillic subset with almost no Latin
# letters, so browsers without the font installed draw "HᴀRIVO" and "Run ᴀ vs ʙ". With only the 400 and 700 faces
# loaded, weight 600 uses the complete 700 face.
THEME = gr.themes.Default(font=[gr.themes.LocalFont("IBM Plex Sans", weights=(400, 700)), "ui-sans-serif",
                                "system-ui", "sans-serif"])
INTRO = """# HARIVO Explorer
Text → video with [HARIVO](https://arxiv.org/abs/2410.07763) (ECCV 2024) on a frozen text-to-image model, and *why* the
video looks the way it does: frame-wise cross-attention maps (text tokens and the K frame-wise tokens), the
vertical-slice stacks of Fig. 6, and what each component changes on the same seed."""


def build_demo(registry: ex.ModelRegistry | None = None, checkpoints: str | None = None,
               defaults: ex.RunRequest | None = None) -> gr.Blocks:
    """The app. Tests pass a registry over a tiny random checkpoint (and small defaults); `python app.py` scans
    checkpoints/ (or $HARIVO_CHECKPOINTS)."""
    registry = registry or ex.ModelRegistry(checkpoints)
    caps = registry.capabilities(registry.default_key)  # loads the default model now: the first visitor waits less
    d = defaults or ex.default_request(registry)  # with the sampling the default model was measured best at
    with gr.Blocks(title="HARIVO Explorer", delete_cache=(3600, 3600)) as demo:
        state = gr.State(None)  # this user's last RunResult
        _header(registry)
        with gr.Tabs():
            with gr.Tab("Explore", elem_id="tab-explore"):
                with gr.Row():
                    ui = _explore_controls(registry, caps, d)
                    ui.update(_explore_results(caps))
            with gr.Tab("Compare A vs B", elem_id="tab-compare"):
                ui.update(_compare_tab(registry, caps, d))
            with gr.Tab("Ablation grid", elem_id="tab-ablation"):
                ui.update(_ablation_tab(registry))
        _wire(ui, state, Handlers(registry, ex.CancelFlags()))
    demo.queue(default_concurrency_limit=registry.concurrency, max_size=32)  # 2 on a CPU Space, 1 on a GPU
    return demo


def _header(registry: ex.ModelRegistry) -> None:
    gr.Markdown(INTRO)
    if registry.untrained_only:
        gr.Markdown(f"⚠️ **No trained checkpoint found in `{registry.checkpoints}`. Running a {ex.TINY_LABEL}: "
                    "its videos are noise by design.**", elem_id="untrained-warning")
    if note := ex.miniature_note(registry):  # one line; the details folded away under it
        summary, details = note
        with gr.Accordion(f"ℹ️ {summary}", open=False, elem_id="miniature-note"):
            gr.Markdown(details, elem_id="miniature-details")


def _explore_controls(registry: ex.ModelRegistry, caps: dict, d: ex.RunRequest) -> dict:
    """The left column of Explore: model, prompt, run buttons, examples and every generation setting. Labels and
    ranges are `harivo.explorer.fields`' (the settings' own, `harivo.settings.flat_range`), defaults those of `d`."""
    seen, held_out = ex.example_prompts()
    ui: dict = {}
    with gr.Column(scale=2, min_width=320):
        ui["model"] = _checked_by_handler(gr.Dropdown([(e.label, e.key) for e in registry.entries],
                                                      value=registry.default_key, label=LABELS["model"],
                                                      elem_id="model"))
        ui["prompt"] = gr.Textbox(d.prompt, label=LABELS["prompt"], lines=2, elem_id="prompt")
        with gr.Row():  # right under the prompt: visible on the first screen
            ui["run"] = gr.Button("Generate", variant="primary", scale=3, elem_id="generate")
            ui["stop"] = gr.Button("Cancel", variant="secondary", size="sm", scale=1, elem_id="cancel")
        ui["cost"] = gr.Markdown(ex.cost_note(caps, registry.costs.last(registry.default_key), d.num_frames,
                                              d.num_inference_steps), elem_id="cost")
        gr.Examples([[p] for p in seen], [ui["prompt"]], label="Prompts seen in training", cache_examples=False,
                    examples_per_page=6)
        gr.Examples([[p] for p in held_out], [ui["prompt"]], label="Held-out combinations (never seen in training)",
                    cache_examples=False)
        ui["negative_prompt"] = gr.Textbox(d.negative_prompt, label=LABELS["negative_prompt"], elem_id="negative")
        with gr.Row():
            ui["seed"] = Number("seed", d.seed, scale=3, elem_id="seed")
            ui["dice"] = gr.Button("random seed", scale=1, size="sm")
        with gr.Row():
            ui["num_frames"] = Number("num_frames", min(d.num_frames, caps["max_frames"]), caps["max_frames"],
                                      elem_id="frames")
            ui["num_inference_steps"] = Number("num_inference_steps", d.num_inference_steps, elem_id="steps")
            ui["fps"] = Number("fps", d.fps, elem_id="fps")
        with gr.Row():  # 0: the model's size
            for name in ex.SIZES:
                ui[name] = Number(name, 0, info=ex.size_info(name, caps), elem_id=name)
        with gr.Accordion("CFG schedule (App. D)", open=False):
            with gr.Row():
                ui["cfg_high"] = Number("cfg_high", d.cfg_high, elem_id="cfg-high")
                ui["cfg_switch"] = Number("cfg_switch", d.cfg_switch, elem_id="cfg-switch")
                ui["cfg_low"] = Number("cfg_low", d.cfg_low, elem_id="cfg-low")
            plot = ex.render_cfg_schedule(d.cfg_high, d.cfg_switch, d.cfg_low, d.num_inference_steps,
                                          registry.get(registry.default_key).scheduler.config)
            ui["cfg_plot"] = gr.Image(plot, label="CFG schedule", format="png", interactive=False, elem_id="cfg-plot")
        with gr.Group():
            ui["use_mapping"] = gr.Checkbox(caps["mapping"], label=LABELS["use_mapping"], interactive=caps["mapping"],
                                            info=caps["missing"].get("mapping"), elem_id="use-mapping")
            ui["use_frame_tokens"] = gr.Checkbox(caps["frame_tokens"], label=LABELS["use_frame_tokens"],
                                                 interactive=caps["frame_tokens"],
                                                 info=caps["missing"].get("frame_tokens"), elem_id="use-tokens")
            ui["use_motion"] = gr.Checkbox(d.use_motion, label=LABELS["use_motion"])
            ui["use_mg"] = gr.Checkbox(d.use_mg, label=LABELS["use_mg"], elem_id="use-mg")
            ui["mg_alpha"] = Number("mg_alpha", d.mg_alpha, elem_id="alpha")
            ui["mg_variant"] = _checked_by_handler(gr.Radio(MG_VARIANTS, value=MG_VARIANTS[d.mg_symmetric],
                                                            label=LABELS["mg_variant"]))
        ui["model_info"] = gr.Markdown(ex.model_info(caps), elem_id="model-info")
        ui["auto"] = gr.Checkbox(True, label="re-run on the same seed when a component or α changes",
                                 elem_id="auto-rerun")
    return ui


def _explore_results(caps: dict) -> dict:
    """The right column of Explore: video, summary, frames, and the tabs of views (attention, slices, MG, bundle)."""
    ui: dict = {}
    with gr.Column(scale=3):
        with gr.Row():
            ui["video"] = gr.Video(label="Video", autoplay=True, loop=True, interactive=False, elem_id="video")
            with gr.Column():
                ui["flicker"] = gr.Number(None, label="Flicker score (0 = steady)", interactive=False,
                                          visible=False, elem_id="flicker")  # shown by the first run
                ui["info"] = gr.Markdown(label="Summary", line_breaks=True, elem_id="summary")
        ui["strip"] = gr.Image(label="Frames", format="png", interactive=False, elem_id="strip")
        with gr.Tabs():
            with gr.Tab("Cross-attention maps", elem_id="tab-attention"):
                with gr.Row():
                    ui["token"] = gr.Dropdown([ex.AUTO_TOKEN], value=ex.AUTO_TOKEN, label="Token",
                                              allow_custom_value=True, elem_id="token")
                    ui["source"] = gr.Dropdown([ex.MEAN_SOURCE], value=ex.MEAN_SOURCE, label="Resolution / layer",
                                               allow_custom_value=True, elem_id="source")
                    ui["step"] = gr.Dropdown([ex.MEAN_STEP], value=ex.MEAN_STEP, label="Step", allow_custom_value=True)
                    ui["attention_overlay"] = gr.Checkbox(True, label="maps on the frames (off: the maps alone)",
                                                          elem_id="attention-overlay")
                ui["overlay"] = gr.Image(label="Attention of the chosen token", format="png", interactive=False,
                                         elem_id="overlay")
                ui["rows"] = gr.Radio(["tokens", "frames"], value="tokens", label="Grid rows")
                ui["grid"] = gr.Image(label="Attention grid", format="png", interactive=False, elem_id="grid")
            with gr.Tab("Vertical slices (Fig. 6)", elem_id="tab-slices"):
                x_red0, x_green0 = ex.default_columns(caps["width"])
                with gr.Row():
                    ui["x_red"] = Number("x_red", x_red0, caps["width"] - 1, elem_id="x-red")
                    ui["x_green"] = Number("x_green", x_green0, caps["width"] - 1, elem_id="x-green")
                gr.Markdown("First frame | the red column of every frame, left to right | the green column | last "
                            "frame. Jaggies = flicker; smooth bands = consistent motion.")
                ui["slices"] = gr.Image(label="Vertical-slice stack", format="png", interactive=False,
                                        elem_id="slices")
            with gr.Tab("MG diagnostics", elem_id="tab-diagnostics"):
                ui["diagnostics"] = gr.Image(label="MG diagnostics", format="png", interactive=False,
                                             elem_id="diagnostics")
            with gr.Tab("Download / load", elem_id="tab-bundle"):
                ui["bundle"] = gr.File(label="Bundle (mp4, GIF, frames.npy, config.json, attention.npz)",
                                       interactive=False, elem_id="bundle")
                ui["upload"] = gr.File(label="Load a bundle back", file_types=[".zip"], elem_id="upload")
    return ui


def _compare_tab(registry: ex.ModelRegistry, caps: dict, d: ex.RunRequest) -> dict:
    gr.Markdown("Same prompt, seed, frames, steps and CFG as in *Explore*; choose what differs.")
    with gr.Row():
        sides = [_side_controls(name, registry, caps, d) for name in ("A", "B")]
    button = gr.Button("Run A vs B", variant="primary", elem_id="compare")
    with gr.Row():
        outputs = [c for name in ("A", "B") for c in _side_outputs(name)]
    return {"compare_button": button, "compare_outputs": outputs,
            "sides": {f"{p}_{name}": c for p, side in zip("ab", sides) for name, c in side.items()}}


def _ablation_tab(registry: ex.ModelRegistry) -> dict:
    gr.Markdown("Rows on one seed with the *Explore* settings and model; columns: four frames and the slice stack "
                "at the red/green columns. Exported as PNG + PDF.")
    return {
        "ablation_rows": gr.Markdown(_ablation_rows(registry, registry.default_key), elem_id="ablation-rows"),
        "mode": _checked_by_handler(gr.Radio([(label, key) for key, label in ex.ABLATION_MODES.items()],
                                             value="variants", label=LABELS["mode"])),
        "ablate": gr.Button("Run ablation grid", variant="primary", elem_id="ablate"),
        "ablation_image": gr.Image(label="Ablation figure", show_label=False, format="png", interactive=False,
                                   elem_id="ablation-image"),
        "ablation_files": gr.File(label="PNG + PDF", file_count="multiple", interactive=False),
    }


def _ablation_rows(registry: ex.ModelRegistry, key: str) -> str:
    """Which checkpoints the grid's rows run for the model chosen in Explore (each mode)."""
    return (f"Rows for the model chosen in *Explore*: {ex.ablation_rows_text(registry, 'variants', key)}; "
            f"{ex.ablation_rows_text(registry, 'alpha', key)}.")


# Keyword names of the handlers = RunRequest fields (+ mg_variant): they are the documented API's parameter names.
# the request's inputs by name: RunRequest's fields (the generation settings are declared in harivo.settings), the MG
# gradient as the "mg_variant" radio instead of the mg_symmetric flag
SETTINGS = ("model", *(m for n in ex.REQUEST_SETTINGS  # the API's parameter order: fps after the steps
                       for m in {"num_inference_steps": (n, "fps"), "mg_symmetric": ("mg_variant",)}.get(n, (n,))))
VIEW = {"token": "token", "attention_source": "source", "attention_step": "step", "grid_rows": "rows",
        "x_red": "x_red", "x_green": "x_green", "attention_overlay": "attention_overlay"}  # API name -> component
OUTPUTS = ("video", "strip", "overlay", "grid", "slices", "cfg_plot", "diagnostics", "flicker", "info", "bundle")


class Handlers:
    """The app's event handlers over one registry; one cancel flag per browser session."""

    def __init__(self, registry: ex.ModelRegistry, flags: ex.CancelFlags):
        self.registry, self.flags = registry, flags

    def generate(self, request: gr.Request, progress=gr.Progress(track_tqdm=True), **values):
        """Generate a video from a prompt: the video, frame strip, attention of the chosen token and grid, Fig. 6
        slice stack, CFG and MG plots, flicker, summary and bundle (zip). Two answers (`ex.run_in_stages`)."""
        with _session(self.flags, request) as cancel:
            values = ex.check_values(self.registry, values)  # a value out of range is refused, naming its field
            req, opts = _request(values), _view(values)
            cfg = ex.render_cfg_schedule(req.cfg_high, req.cfg_switch, req.cfg_low, req.num_inference_steps,
                                         self.registry.get(req.model).scheduler.config)
            for result, views, done in ex.run_in_stages(self.registry, req, opts, cancel):
                if not done:
                    for warning in result.warnings:
                        gr.Warning(warning)
                yield _show(result, views, cfg, done)

    def cfg_plot(self, model, high, switch, low, steps):
        return cfg_plot(self.registry, model, high, switch, low, steps)

    def auto_generate(self, auto, last, request: gr.Request, progress=gr.Progress(track_tqdm=True), **values):
        if auto and last is not None:  # else nothing to compare with yet, or the user switched re-running off
            yield from self.generate(request, **values)
        else:
            yield [gr.skip()] * (len(OUTPUTS) + 1)

    def auto_alpha(self, auto, last, request: gr.Request, progress=gr.Progress(track_tqdm=True), **values):
        """Re-run when the α box is left (or Enter is pressed) with another α than the last video's."""
        same = last is not None and values["mg_alpha"] == last.settings["mg"]["alpha"]
        yield from self.auto_generate(auto and not same, last, request, **values)

    def cancel(self, request: gr.Request):
        if not self.flags.cancel(request.session_hash):
            gr.Info("Nothing is running.")

    def load_bundle(self, file):
        """Load a bundle zip written by /generate: returns the same outputs as /generate."""
        with _session(None, None):
            result = ex.load_bundle(file)
            return _show(result, ex.render_views(result), gr.skip())

    def redraw_slices(self, result, x_red, x_green):
        """The slice stack at the typed columns; a column outside the last video is refused, naming the field."""
        if result is None or x_red is None or x_green is None:  # nothing drawn yet, or a box being retyped
            return gr.skip()
        with _session(None, None):
            high = result.frames.shape[2] - 1
            x_red, x_green = NUMBERS["x_red"].check(x_red, high), NUMBERS["x_green"].check(x_green, high)
            return ex.render_slices(result, x_red, x_green)

    def redraw_attention(self, result, token, source, step, grid_rows, overlay):
        if result is None:
            return gr.skip(), gr.skip()
        with _session(None, None):
            views = ex.render_attention(result, token, source, step, grid_rows, overlay)
        return views["token"], views["grid"]

    def change_model(self, key, frames=None, steps=None, height=None, width=None):
        """The fields that follow the model: the frame range, the components it has (and why one is off), the
        sizes, the columns, the cost note, the ablation grid's rows and the sampling it was measured best at (a
        frame count it cannot make stays, and is refused by Generate, naming the range)."""
        with _session(None, None):
            c = self.registry.capabilities(key)
        sampling = {name: c["sampling"].get(name, getattr(ex.RunRequest, name)) for name in SAMPLING_DEFAULTS}
        return (gr.update(info=NUMBERS["num_frames"].span(c["max_frames"])),
                *(gr.update(value=c[k], interactive=c[k], info=c["missing"].get(k)) for k in ("mapping",
                                                                                               "frame_tokens")),
                ex.model_info(c), *self.columns(key, width), _ablation_rows(self.registry, key),
                *(gr.update(info=ex.size_info(n, c)) for n in ex.SIZES),
                self.cost(key, frames, steps, height, width), *(gr.update(value=v) for v in sampling.values()))

    def cost(self, key, frames, steps, height, width):
        """The cost note of the values typed so far (skipped while a box holds a value the run would refuse)."""
        note = ex.typed_cost(self.registry, key, frames, steps, height, width)
        return gr.skip() if note is None else note

    def columns(self, key, width):
        """The slice columns' defaults and range for a newly typed width (skipped while it is being retyped)."""
        width = ex.typed_width(self.registry, key, width)
        if width is None:
            return gr.skip(), gr.skip()
        return tuple(gr.update(info=NUMBERS["x_red"].span(width - 1), value=x) for x in ex.default_columns(width))

    def compare(self, request: gr.Request, progress=gr.Progress(track_tqdm=True), **values):
        """A vs B on the same prompt, seed and schedule: the `a_*`/`b_*` values override the shared ones."""
        with _session(self.flags, request) as flag:
            values = ex.check_values(self.registry, values)
            base = _request(values)
            a, b = (dataclasses.replace(base, **{k[2:]: v for k, v in values.items() if k.startswith(p)})
                    for p in ("a_", "b_"))
            results = ex.run_compare(self.registry, a, b, flag)
        return [x for r in results for x in (str(r.video), ex.render_slices(r, values["x_red"], values["x_green"]),
                                             ex.summary(r))]

    def ablation(self, mode, request: gr.Request, progress=gr.Progress(track_tqdm=True), **values):
        """The ablation grid (mode "variants": Table 1 rows of the model's family, or "alpha") on one seed;
        returns the figure and its PNG + PDF."""
        with _session(self.flags, request) as flag:
            values = ex.check_values(self.registry, {**values, "mode": mode})
            res = ex.run_ablation(self.registry, mode, _request(values), values["x_red"], values["x_green"], flag)
        return res.image, [str(res.png), str(res.pdf)]


def sync_choices(result, token, source, step):
    """The token / source / step dropdowns offer what the new result recorded."""
    if result is None:
        return gr.skip(), gr.skip(), gr.skip()
    v, rec = ex.resolve_view(result, ex.ViewOptions(token, source, step)), result.attention
    return (gr.update(choices=ex.token_choices(rec), value=v.token),
            gr.update(choices=ex.source_choices(rec), value=v.source),
            gr.update(choices=ex.step_choices(rec), value=v.step))


def cfg_plot(registry: ex.ModelRegistry, model, high, switch, low, steps):
    """The CFG schedule's plot of the values typed so far, on the timesteps the selected model's scheduler runs; a
    value out of range is refused, naming the field (a box being retyped, empty, is skipped)."""
    values = {"cfg_high": high, "cfg_switch": switch, "cfg_low": low, "num_inference_steps": steps}
    if any(v is None for v in values.values()):
        return gr.skip()
    with _session(None, None):
        v = {name: NUMBERS[name].check(value) for name, value in values.items()}
        config = registry.get(model).scheduler.config if model in registry.keys else None
        return ex.render_cfg_schedule(v["cfg_high"], v["cfg_switch"], v["cfg_low"], v["num_inference_steps"], config)


def _wire(ui: dict, state: gr.State, h: Handlers) -> None:
    """Every event of the page. After a run the view dropdowns follow the new result."""
    settings = {name: ui[name] for name in SETTINGS}
    run_inputs = {**settings, **{api: ui[c] for api, c in VIEW.items()}}
    outputs = [ui[name] for name in OUTPUTS] + [state]
    choices = [ui["token"], ui["source"], ui["step"]]  # refreshed from the new result (not part of the API)
    hidden = dict(api_visibility="private", show_progress="hidden")
    sized = [ui[n] for n in ("model", "num_frames", "num_inference_steps", "height", "width")]  # what the cost needs

    def then_sync(event):
        event.then(sync_choices, [state] + choices, choices, **hidden)
        event.then(h.cost, sized, ui["cost"], **hidden)  # the estimate from the run just measured
        # the flicker box appears with the first result: before a run it would read "0" (Gradio draws None as 0)
        event.then(lambda st: gr.Number(visible=st is not None), state, ui["flicker"], **hidden)

    then_sync(ui["run"].click(h.generate, inputs_kwargs=run_inputs, outputs=outputs, api_name="generate"))
    then_sync(ui["prompt"].submit(h.generate, inputs_kwargs=run_inputs, outputs=outputs, api_visibility="private"))
    rerun = dict(inputs_kwargs=run_inputs, trigger_mode="always_last", api_visibility="private")
    for name in ("use_mapping", "use_frame_tokens", "use_motion", "use_mg", "mg_variant"):
        then_sync(ui[name].input(h.auto_generate, [ui["auto"], state], outputs, **rerun))
    then_sync(gr.on([ui["mg_alpha"].submit, ui["mg_alpha"].blur], h.auto_alpha, [ui["auto"], state], outputs,
                    **rerun))
    ui["stop"].click(h.cancel, None, None, queue=False, api_visibility="private")
    then_sync(ui["upload"].upload(h.load_bundle, ui["upload"], outputs, api_name="load_bundle"))
    view = [state, ui["token"], ui["source"], ui["step"], ui["rows"], ui["attention_overlay"]]
    for name in ("token", "source", "step", "rows", "attention_overlay"):
        ui[name].input(h.redraw_attention, view, [ui["overlay"], ui["grid"]], api_visibility="private")
    for name in ("x_red", "x_green"):
        ui[name].input(h.redraw_slices, [state, ui["x_red"], ui["x_green"]], ui["slices"], api_visibility="private",
                       trigger_mode="always_last")
    cfg = [ui["model"], ui["cfg_high"], ui["cfg_switch"], ui["cfg_low"], ui["num_inference_steps"]]
    for control in cfg:
        control.change(h.cfg_plot, cfg, ui["cfg_plot"], **hidden)
    ui["model"].change(h.change_model, sized, [ui[n] for n in ("num_frames", "use_mapping", "use_frame_tokens",
                                                               "model_info", "x_red", "x_green", "ablation_rows",
                                                               *ex.SIZES, "cost", *SAMPLING_DEFAULTS)],
                       api_visibility="private")
    for name in ("num_frames", "num_inference_steps", "height", "width"):
        ui[name].change(h.cost, sized, ui["cost"], **hidden)
    ui["width"].change(h.columns, [ui["model"], ui["width"]], [ui["x_red"], ui["x_green"]], **hidden)
    ui["dice"].click(lambda: random.randrange(2**31), None, ui["seed"], queue=False, api_visibility="private")
    columns = {"x_red": ui["x_red"], "x_green": ui["x_green"]}
    ui["compare_button"].click(h.compare, inputs_kwargs={**settings, **ui["sides"], **columns},
                               outputs=ui["compare_outputs"], api_name="compare")
    ui["ablate"].click(h.ablation, [ui["mode"]], [ui["ablation_image"], ui["ablation_files"]],
                       inputs_kwargs={**settings, **columns}, api_name="ablation")


def _request(values: dict) -> ex.RunRequest:
    """The settings among the handler's keyword values → RunRequest (mg_variant radio → mg_symmetric)."""
    names = {f.name for f in dataclasses.fields(ex.RunRequest)}
    kw = {k: v for k, v in values.items() if k in names}
    return ex.RunRequest(**kw, mg_symmetric=values.get("mg_variant") == MG_VARIANTS[1])


def _view(values: dict) -> ex.ViewOptions:
    return ex.ViewOptions(values.get("token"), values.get("attention_source"), values.get("attention_step"),
                          values.get("grid_rows", "tokens"), values.get("x_red"), values.get("x_green"),
                          values.get("attention_overlay", True))


@contextlib.contextmanager
def _session(flags: ex.CancelFlags | None, request: gr.Request | None):
    """This session's cancel flag for the duration of a run; ValueError (bad input) → gr.Error for the user."""
    session = getattr(request, "session_hash", None) or "local"
    event = flags.start(session) if flags is not None else None
    try:
        yield event
    except ValueError as e:
        raise gr.Error(str(e), print_exception=False) from None
    finally:
        if flags is not None:
            flags.finish(session, event)


def _side_controls(name: str, registry: ex.ModelRegistry, caps: dict, d: ex.RunRequest) -> dict:
    with gr.Column():
        gr.Markdown(f"### {name}")
        return dict(
            model=_checked_by_handler(gr.Dropdown([(e.label, e.key) for e in registry.entries],
                                                  value=registry.default_key, label=LABELS["model"])),
            use_mapping=gr.Checkbox(caps["mapping"] and name == "B", label=LABELS["use_mapping"]),
            use_frame_tokens=gr.Checkbox(caps["frame_tokens"] and name == "B", label=LABELS["use_frame_tokens"]),
            use_motion=gr.Checkbox(d.use_motion, label=LABELS["use_motion"]),
            use_mg=gr.Checkbox(d.use_mg and name == "B", label=LABELS["use_mg"]),
            mg_alpha=Number("mg_alpha", d.mg_alpha),
        )


def _side_outputs(name: str) -> tuple:
    """One side of Compare: video and summary side by side, the slice stack under them at full width."""
    n = name.lower()
    with gr.Column():
        with gr.Row():
            video = gr.Video(label=name, autoplay=True, loop=True, interactive=False, elem_id=f"video-{n}")
            text = gr.Markdown(line_breaks=True, elem_id=f"summary-{n}")
        slices = gr.Image(label=f"{name}: slices", format="png", interactive=False, elem_id=f"slices-{n}")
    return video, slices, text


def _show(result: ex.RunResult, views: dict, cfg_plot, done: bool = True) -> tuple:
    """A result's outputs, named as in OUTPUTS (which orders them for Gradio and the API), then the state. Before
    the run is `done` (`ex.run_in_stages`' first answer), views not drawn yet and the bundle are empty: nothing of the
    previous video stays beside the new one."""
    drawn = {"strip": "strip", "overlay": "token", "grid": "grid", "slices": "slices", "diagnostics": "diagnostics"}
    named = {name: views.get(key) for name, key in drawn.items()}
    named.update({"video": str(result.video), "cfg_plot": cfg_plot, "info": ex.summary(result),
                  "flicker": None if result.flicker != result.flicker else round(result.flicker, 4),
                  "bundle": str(result.bundle) if done and result.bundle else None})
    return (*(named[name] for name in OUTPUTS), result)


def __getattr__(name: str):
    """`app.demo` (what `gradio app.py` looks for) is built on first access, so importing `build_demo` is cheap."""
    if name == "demo":
        globals()["demo"] = build_demo()
        return globals()["demo"]
    raise AttributeError(name)


def main(argv: list[str] | None = None) -> None:
    """`python app.py [--models models.yaml] [--base-model ... --motion-adapter ...]`: `--help` lists the flags."""
    parser = ex.build_parser()
    args = parser.parse_args(argv)
    try:
        choice = threads.ThreadChoice(args.threads)  # each run: the cores the load leaves ($HARIVO_THREADS fixes it)
        if choice.monitor is not None:
            choice.monitor.start()
        choice.apply()
        demo = build_demo(ex.ModelRegistry(args.checkpoints, models=ex.models_from_args(args), threads=choice))
    except ValueError as e:
        parser.error(str(e))
    demo.launch(theme=THEME)


if __name__ == "__main__":
    main()
