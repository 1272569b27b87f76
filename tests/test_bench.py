"""`python -m harivo.bench`: argument checks, the timing helpers, and dry runs of every section on tiny models
(the SD1.5 section with tiny configs on the CPU: same code as on a GPU, minus the device)."""

import json
import math
import time

import pytest
import torch

from harivo import bench, fileio
from harivo.bench import cases as bench_cases

TINY = bench_cases.ScaleConfigs(
    unet=dict(sample_size=16, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(16, 32),
              down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
              up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=16, attention_head_dim=4,
              norm_num_groups=8),
    vae=dict(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
             up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16), layers_per_block=1,
             latent_channels=4, norm_num_groups=4),
    text=dict(vocab_size=1000, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
              max_position_embeddings=77),
    adapter=dict(block_out_channels=(16, 32), motion_layers_per_block=1, motion_num_attention_heads=2,
                 motion_norm_num_groups=8, motion_max_seq_length=32, use_motion_mid_block=True),
)
CPU = torch.device("cpu")


@pytest.mark.parametrize("kwargs, name", [
    (dict(device="tpu"), "device"),
    (dict(frames=2), "frames"),
    (dict(frames=33), "frames"),
    (dict(steps=0), "steps"),
    (dict(repeats=0), "repeats"),
    (dict(sd15_sizes=[256, 300]), "sd15_sizes"),
    (dict(sd15_sizes=[0]), "sd15_sizes"),
    (dict(sd15_sizes=[576]), "sd15_sizes"),
])
def test_validate_names_the_argument(kwargs, name):
    args = dict(device="cpu", frames=16, steps=None, repeats=None, sd15_sizes=None) | kwargs
    with pytest.raises(ValueError, match=f"^{name}:"):
        bench.validate(**args)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_is_refused_before_anything_runs(capsys):
    with pytest.raises(SystemExit) as e:
        bench.main(["--quick", "--device", "cuda"])
    assert e.value.code == 2 and "device: 'cuda'" in capsys.readouterr().err


def test_cli_rejects_bad_sizes(capsys):
    with pytest.raises(SystemExit):
        bench.main(["--sd15-sizes", "256,abc"])
    assert "sd15-sizes" in capsys.readouterr().err


def test_interleaved_runs_round_robin_and_takes_medians():
    order = []
    cases = {"a": lambda: order.append("a"), "b": lambda: (order.append("b"), time.sleep(0.002))}
    t = bench_cases.interleaved(cases, repeats=3, device=CPU, warmup=1)
    assert order == ["a", "b", "b", "a", "a", "b", "b", "a"]  # round robin, each round starting one case later
    assert len(t["a"]["times_s"]) == 3 and t["b"]["wall_s"] >= 0.002 > t["a"]["wall_s"]
    assert "peak_cuda_mb" not in t["a"]
    assert bench_cases.ratio(t, "b", "a") > 1


def test_checks_compare_each_figure_with_its_target():
    result = {"sampler_vs_diffusers": 1.01, "mg_overhead": 1.5, "train_step_full_vs_baseline": float("nan")}
    c = bench.checks(result)
    assert c["sampler_vs_diffusers"] == {"value": 1.01, "target": 1.05, "pass": True}
    assert c["mg_overhead"]["pass"] is False and c["train_step_full_vs_baseline"]["pass"] is False
    assert "capture_overhead" not in c  # not measured, not judged


def test_quick_run_reports_every_ratio(tmp_path):
    result = bench.run(quick=True, frames=3, steps=2, repeats=1, app=False)
    for name, (num, den) in bench_cases.INFERENCE_RATIOS.items():
        assert result[name] == pytest.approx(result["seconds"][num]["wall_s"] / result["seconds"][den]["wall_s"])
    assert math.isfinite(result["train_step_full_vs_baseline"]) and result["train_step_full_vs_baseline"] > 0
    assert result["train_step_settings"]["num_frames"] == 3 and result["model"] == "tiny random"
    assert set(result["checks"]) == set(bench.TARGETS) - {"app_request_seconds"}
    assert result["peak_rss_mb"] > 0 and result["machine"]["versions"]["torch"] == torch.__version__
    assert "sd15" not in result  # CPU only
    fileio.write_json(tmp_path / "bench.json", result)
    assert json.loads((tmp_path / "bench.json").read_text())["targets"] == bench.TARGETS


def test_app_request_section_times_the_default_request(tmp_path, capsys):
    """`--app`: the first answer comes before the last, each run on the app's thread choice (here fixed)."""
    assert bench.main(["--app", "--quick", "--repeats", "1", "--threads", "1", "--json", str(tmp_path / "app.json")]) == 0
    out = json.loads((tmp_path / "app.json").read_text())
    assert 0 < out["app_request"]["sampling_s"] < out["app_request_seconds"] <= out["app_request_all_seconds"]
    assert out["app_model"].startswith("tiny") and out["app_request"]["threads"] == [1]
    assert out["app_request"]["frames"] == 16 and out["app_request"]["steps"] == 25  # the tiny model records none
    assert set(out["checks"]) == {"app_request_seconds"}
    assert "app request: first answer" in capsys.readouterr().out


def test_sd15_section_dry_run_on_tiny_configs():
    accelerator = bench.make_accelerator(CPU, "no")
    out = bench.scale_section([16, 32], frames=3, steps=2, repeats=1, device=CPU, accelerator=accelerator,
                              dtype=torch.bfloat16, configs=TINY)
    assert out["dtype"] == "bfloat16" and out["frames"] == 3
    for size in ("16px", "32px"):
        train_part, infer_part = out[size]["train_step"], out[size]["inference"]
        assert set(train_part["seconds"]) == {"baseline", "full"} and train_part["full_vs_baseline"] > 0
        assert train_part["settings"]["video_size"] == int(size[:-2]) and train_part["settings"]["batch_size"] == 1
        assert set(infer_part["seconds"]) == {"diffusers", "harivo_full", "harivo_app", "diffusers_traced"}
        assert infer_part["full_vs_diffusers"] > 0 and infer_part["trace_overhead"] > 0
        assert infer_part["app_vs_diffusers"] == pytest.approx(
            infer_part["seconds"]["harivo_app"]["wall_s"] / infer_part["seconds"]["diffusers"]["wall_s"])


def test_trace_option_measures_the_trace_figure_alone(tmp_path, capsys):
    """`--trace`: stock AnimateDiffPipeline with ÷ without `harivo.trace`, side by side; the SD1.5-sized part on tiny
    configs (what `--device cuda` adds)."""
    out = bench_cases.trace_section(True, frames=3, steps=2, repeats=1, device=CPU, workdir=tmp_path,
                                    sd15_sizes=[16], dtype=torch.float32, configs=TINY)
    assert set(out["seconds"]) == {"diffusers", "diffusers_traced"} and out["model"] == "tiny random"
    assert out["trace_overhead"] == out["seconds"]["diffusers_traced"]["wall_s"] / out["seconds"]["diffusers"]["wall_s"]
    assert out["cpu_time_ratios"]["trace_overhead"] > 0 and out["sd15"]["16px"]["trace_overhead"] > 0
    assert bench.main(["--trace", "--quick", "--frames", "3", "--steps", "1", "--repeats", "1",
                       "--json", str(tmp_path / "trace.json")]) == 0
    assert "trace_overhead" in capsys.readouterr().out
    result = json.loads((tmp_path / "trace.json").read_text())
    assert set(result["checks"]) == {"trace_overhead"} and "train_step_full_vs_baseline" not in result


def test_out_of_memory_is_recorded_not_raised():
    def oom():
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 80 GiB\nmore")

    assert bench_cases.guarded(oom) == {"error": "out of memory: CUDA out of memory. Tried to allocate 80 GiB"}


def test_load_section_runs_generate_idle_and_beside_a_busy_process(tmp_path, monkeypatch):
    """The load figure's plumbing without the minutes: `generate` and the busy process replaced by stand-ins, the
    four cases interleaved and the ratio taken of medians."""
    import subprocess

    from harivo.bench import cases as bench_cases

    calls, busy = [], []

    class Busy:
        def __init__(self, cmd):
            busy.append(cmd)

        def kill(self):
            pass

        def wait(self):
            pass

    def fake_run(cmd, **kwargs):  # writes what the CLI records: the threads it ran on
        calls.append((cmd, len(busy)))
        out = tmp_path / "load-bench"
        out.mkdir(exist_ok=True)
        threads = int(cmd[cmd.index("--threads") + 1]) if "--threads" in cmd else (1 if busy and len(calls) % 2 == 0 else 2)
        (out / "config.json").write_text(json.dumps({"torch_threads": threads}))

    monkeypatch.setattr(subprocess, "Popen", Busy)
    monkeypatch.setattr(subprocess, "run", fake_run)
    out = bench_cases.load_section(2, tmp_path, steps=3)
    assert len(calls) == 8 and len(busy) == 4  # 2 rounds x 4 cases; the loaded ones start one busy process each
    assert all(cmd[1:3] == ["-m", "harivo.generate"] and cmd[cmd.index("--steps") + 1] == "3" for cmd, _ in calls)
    assert sum("--threads" in cmd for cmd, _ in calls) == 4  # the all-CPU cases pin the count, the default does not
    assert set(out["load"]["seconds"]) == {"default_idle", "default_loaded", "all_cpus_idle", "all_cpus_loaded"}
    med = out["load"]["median_s"]
    assert out["loaded_vs_idle"] == med["default_loaded"] / med["default_idle"]
    assert set(out["load"]["threads_used"]) == set(out["load"]["seconds"])
    assert all(len(v) == 2 for v in out["load"]["threads_used"].values())
