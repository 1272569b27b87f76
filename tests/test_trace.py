"""`harivo.trace`: the frame-wise cross-attention of a stock diffusers `AnimateDiffPipeline` call, traced from the
outside, equals what `HarivoPipeline` records on the same weights and seed (the oracle settings); tracing leaves the
video and the pipeline as they were; a word's map merges its sub-word tokens as DAAM does."""

import numpy as np
import pytest
import torch
from diffusers import AnimateDiffPipeline, DDIMScheduler

import harivo
from harivo.sampling import CFGSchedule, MGConfig
from harivo.settings import GenerationSettings

from conftest import build_pipeline

PROMPT = "a cat is moving left to right on a gray background"  # "cat" is three tokens (c, a, t</w>) in the tiny vocab
FRAMES, STEPS, SEED = 3, 3, 3


@pytest.fixture
def pipes(tiny):
    """HarivoPipeline (everything but capture off) and stock AnimateDiffPipeline on the very same UNet."""
    pipe = build_pipeline(tiny)
    ad = AnimateDiffPipeline(vae=tiny.vae, text_encoder=tiny.text_encoder, tokenizer=tiny.tokenizer,
                             unet=pipe.model.unet, motion_adapter=None,
                             scheduler=DDIMScheduler(**pipe.scheduler.config))
    ad.set_progress_bar_config(disable=True)
    return pipe, ad


def stock(ad, prompt=PROMPT, **kwargs):
    return ad(prompt, num_frames=FRAMES, num_inference_steps=STEPS, guidance_scale=7.5,
              generator=torch.Generator().manual_seed(SEED), output_type="np", **kwargs).frames


def settings(**overrides) -> GenerationSettings:
    return GenerationSettings(PROMPT, seed=SEED, num_frames=FRAMES, num_inference_steps=STEPS,
                              cfg=CFGSchedule.constant(7.5), mg=MGConfig(enabled=False), use_mapping=False,
                              use_frame_tokens=False, **overrides)


def processors(unet) -> dict[str, int]:
    return {name: id(proc) for name, proc in unet.attn_processors.items()}


def test_stock_trace_equals_the_harivo_record_and_leaves_the_video_alone(pipes):
    pipe, ad = pipes
    untraced = stock(ad)
    with harivo.trace(ad) as tr:
        traced = stock(ad)
    assert np.array_equal(traced, untraced)  # bit-identical video
    ours = pipe(settings()).attention
    rec = tr.record
    assert rec.tokens == ours.tokens and rec.tokens[:6] == ["<sot>", "a", "c", "a", "t", "is"]
    assert rec.tokens[-1] == "<eot>" and set(rec.token_kinds) == {"text"}
    assert rec.timesteps == ours.timesteps and len(rec.timesteps) == STEPS
    assert rec.per_step.keys() == ours.per_step.keys() == {"8x8", "4x4"}
    assert rec.per_layer.keys() == ours.per_layer.keys()
    for res, maps in rec.per_step.items():
        assert maps.shape == (STEPS, 1, FRAMES, *map(int, res.split("x")), len(rec.tokens))
        assert (maps - ours.per_step[res]).abs().max() <= 1e-5
    for name, maps in rec.per_layer.items():
        assert (maps - ours.per_layer[name]).abs().max() <= 1e-5
    assert (tr.word_map("cat") - harivo_word_map(pipe, "cat")).abs().max() <= 1e-5


def harivo_word_map(pipe, word):
    with harivo.trace(pipe) as tr:
        out = pipe(settings(capture_attention=False))  # the trace switches capture on for its calls
    assert out.attention is not None and tr.record is out.attention and tr.prompt == PROMPT
    return tr.word_map(word)


def test_hooks_are_removed_after_the_block_also_when_the_call_raises(pipes):
    _, ad = pipes
    before = processors(ad.unet)
    with harivo.trace(ad) as tr:
        assert "encode_prompt" in vars(ad)
        stock(ad)
        assert processors(ad.unet) != before  # recording processors on the cross-attention layers
    assert processors(ad.unet) == before and "encode_prompt" not in vars(ad) and not ad.unet._forward_pre_hooks

    def stop(pipe, i, t, kwargs):
        raise KeyboardInterrupt("stopped at step 1")

    with pytest.raises(KeyboardInterrupt):
        with harivo.trace(ad):
            stock(ad, callback_on_step_end=stop)
    assert processors(ad.unet) == before and "encode_prompt" not in vars(ad) and not ad.unet._forward_pre_hooks
    assert len(tr.record.timesteps) == STEPS  # the first trace's record is untouched


def test_word_map_averages_the_words_sub_word_tokens(pipes):
    _, ad = pipes
    with harivo.trace(ad, keep_per_step=False) as tr:
        stock(ad)
    maps = tr.maps()  # (b, f, h, w, n), every resolution upsampled to 8x8 and averaged
    assert maps.shape == (1, FRAMES, 8, 8, len(tr.tokens))
    assert tr.token_indices("cat") == [2, 3, 4]  # <sot> a | c a t
    assert tr.token_indices("a") == [1, 11]  # the word "a" (a</w>), not the "a" inside "cat"
    by_hand = (maps[..., 2] + maps[..., 3] + maps[..., 4]) / 3
    torch.testing.assert_close(tr.word_map("cat"), by_hand, rtol=0, atol=1e-7)
    torch.testing.assert_close(tr.word_map("cat", merge="sum"), 3 * by_hand, rtol=0, atol=1e-6)
    torch.testing.assert_close(tr.word_map("CAT"), by_hand, rtol=0, atol=1e-7)
    torch.testing.assert_close(tr.word_map("gray background"), maps[..., [12, 13]].mean(-1), rtol=0, atol=1e-7)
    one = tr.word_map("cat", resolution="4x4", step=0, size=(4, 4))
    assert one.shape == (1, FRAMES, 4, 4)
    torch.testing.assert_close(one, tr.record.per_step["4x4"][0, ..., 2:5].mean(-1), rtol=0, atol=1e-7)
    with pytest.raises(ValueError, match=r"^word: 'dog' is not in the traced prompt; expected one of \['a', 'cat'"):
        tr.word_map("dog")
    with pytest.raises(ValueError, match="^merge:"):
        tr.word_map("cat", merge="max")


def test_prompt_index_picks_one_prompts_videos(pipes):
    _, ad = pipes
    prompts = [PROMPT, "a red star is spinning"]
    with harivo.trace(ad, prompt_index=1) as tr:
        stock(ad, prompts)
    assert tr.prompt == prompts[1] and tr.tokens == ["<sot>", "a", "red", "star", "is", "spinning", "<eot>"]
    assert tr.word_map("star").shape == (1, FRAMES, 8, 8)
    with harivo.trace(ad, prompt_index=1):
        with pytest.raises(ValueError, match="^prompt_index:"):
            stock(ad)  # one prompt only
    with harivo.trace(ad) as tr:  # no CFG: the batch is the conditional videos alone
        ad(prompts, num_frames=FRAMES, num_inference_steps=2, guidance_scale=1.0, output_type="latent")
    assert tr.prompt == PROMPT and tr.maps().shape == (1, FRAMES, 8, 8, 15) and len(tr.record.timesteps) == 2


def test_bad_arguments_name_themselves(pipes):
    pipe, ad = pipes
    for kwargs, name in ((dict(prompt_index=-1), "prompt_index"), (dict(keep_per_step=1), "keep_per_step")):
        with pytest.raises(ValueError, match=f"^{name}:"):
            with harivo.trace(ad, **kwargs):
                pass
    with pytest.raises(ValueError, match="^pipe:"):
        with harivo.trace(object()):
            pass
    with harivo.trace(ad) as tr:
        with pytest.raises(ValueError, match="^pipe: already"):
            with harivo.trace(ad):
                pass
    with pytest.raises(RuntimeError, match="nothing was traced"):
        tr.word_map("cat")


def test_an_image_pipeline_is_traced_as_one_frame_videos_and_embeddings_as_key_positions(tiny):
    from diffusers import StableDiffusionPipeline

    sd = StableDiffusionPipeline(vae=tiny.vae, text_encoder=tiny.text_encoder, tokenizer=tiny.tokenizer,
                                 unet=tiny.unet, scheduler=tiny.scheduler, safety_checker=None,
                                 feature_extractor=None, requires_safety_checker=False)
    sd.set_progress_bar_config(disable=True)

    def run(**kwargs):
        return sd(num_inference_steps=2, generator=torch.Generator().manual_seed(0), output_type="np", **kwargs).images

    untraced = run(prompt=PROMPT, num_images_per_prompt=2)
    with harivo.trace(sd) as tr:
        assert np.array_equal(run(prompt=PROMPT, num_images_per_prompt=2), untraced)
    assert tr.word_map("cat").shape == (2, 1, 8, 8)  # two images of one prompt, one frame each
    embeds, _ = sd.encode_prompt(PROMPT, "cpu", 1, False)
    with harivo.trace(sd) as tr:
        run(prompt_embeds=embeds)
    assert tr.prompt is None and tr.tokens[:2] == ["[0]", "[1]"] and tr.maps().shape[-1] == 77
    with pytest.raises(ValueError, match="^word: the traced call passed prompt embeddings"):
        tr.word_map("cat")
