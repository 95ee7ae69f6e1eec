"""SAM2's per-slice tracking step restated on batch-first tensors, for the lockstep device loop.

Same arithmetic as ``SAM2Base.track_step`` on a non-conditioning frame (memory attention, the mask decoder with
multimask output, the memory encoder), with every step-independent quantity computed once, so that a step issues
about 40 % fewer operations than SAM2's modules (on the GPU a step is bound by operation launches). Models whose
layout it does not restate (:meth:`LeanStep.supports`) run SAM2's own modules in
:func:`~zeroshot.segmenters.sam2_lockstep.run_lockstep`.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from zeroshot.segmenters.video_core import NO_SCORE

__all__ = ["LeanStep"]


class LeanStep:
    """SAM2's per-slice tracking step for a batch, with every step-independent quantity computed once.

    Same arithmetic as ``SAM2Base.track_step`` on a non-conditioning frame (memory attention, the mask decoder
    with multimask output, the memory encoder), restated on batch-first tensors so that a step issues about
    half as many operations: the prompt embeddings of a frame without prompts, the decoder's output tokens and
    dense positional encoding, the rotary encodings and the scaled image positional encoding are constants;
    the cross-attention keys and values of all memory-attention layers come from one projection each (their
    inputs are the same in every layer); dropout (a no-op in evaluation) is skipped; only the chosen mask is
    upsampled; the memory encoder's positional encoding (constant, and kept from the conditioning frames) is
    not recomputed. Only SAM2's standard layout is restated (:meth:`supports`); other models take SAM2's own
    modules step by step.

    Parameters
    ----------
    model : SAM2Base
        In evaluation mode; build under the caller's autocast (the constants take its precision).
    pos_enc : (1, C, H, W) tensor
        Positional encoding of the top feature level.
    """

    def __init__(self, model: Any, pos_enc: torch.Tensor) -> None:
        from sam2.modeling.sam2_utils import LayerNorm2d

        self.model = model
        attention = model.memory_attention
        self.layers = list(attention.layers)
        first = self.layers[0]
        height, width = (int(v) for v in pos_enc.shape[-2:])
        # (HW, 1, C/2) complex: broadcasts over (B, HW, heads-or-parts, C/2)
        freqs = first.self_attn.compute_cis(end_x=width, end_y=height).to(pos_enc.device)
        self.freqs = freqs[:, None]
        self.curr_pos = (0.1 * pos_enc.flatten(2).transpose(1, 2)) if attention.pos_enc_at_input else None
        self.qkv_weight = [
            torch.cat([la.self_attn.q_proj.weight, la.self_attn.k_proj.weight, la.self_attn.v_proj.weight])
            for la in self.layers
        ]
        self.qkv_bias = [
            torch.cat([la.self_attn.q_proj.bias, la.self_attn.k_proj.bias, la.self_attn.v_proj.bias])
            for la in self.layers
        ]
        self.k_weight = torch.cat([la.cross_attn_image.k_proj.weight for la in self.layers])
        self.k_bias = torch.cat([la.cross_attn_image.k_proj.bias for la in self.layers])
        self.v_weight = torch.cat([la.cross_attn_image.v_proj.weight for la in self.layers])
        self.v_bias = torch.cat([la.cross_attn_image.v_proj.bias for la in self.layers])
        self.dim = int(first.cross_attn_image.internal_dim)

        decoder = model.sam_mask_decoder
        device = pos_enc.device
        sparse, dense = model.sam_prompt_encoder(
            points=(torch.zeros(1, 1, 2, device=device), -torch.ones(1, 1, dtype=torch.int32, device=device)),
            boxes=None,
            masks=None,
        )
        output_tokens = torch.cat(
            [decoder.obj_score_token.weight, decoder.iou_token.weight, decoder.mask_tokens.weight]
        )
        self.tokens = torch.cat([output_tokens[None].to(sparse.dtype), sparse], dim=1)
        self.dense = dense
        self.image_pe = model.sam_prompt_encoder.get_dense_pe()
        self.mask_tokens = int(decoder.num_mask_tokens)
        self._repeated: dict[int, torch.Tensor] = {}
        self.downsampler = [
            (module, isinstance(module, LayerNorm2d)) for module in model.memory_encoder.mask_downsampler.encoder
        ]
        self._arange: dict[int, torch.Tensor] = {}

    @staticmethod
    def supports(model: Any) -> bool:
        """Whether the model has the layout this step restates (SAM2 and SAM2.1 configs, MedSAM2 do)."""
        from sam2.modeling.memory_encoder import CXBlock
        from sam2.modeling.sam.transformer import RoPEAttention
        from sam2.modeling.sam2_utils import LayerNorm2d

        attention, decoder = model.memory_attention, model.sam_mask_decoder
        layers = list(attention.layers)
        layer_ok = all(
            isinstance(la.self_attn, RoPEAttention)
            and isinstance(la.cross_attn_image, RoPEAttention)
            and la.self_attn.num_heads == 1
            and la.cross_attn_image.num_heads == 1
            and la.cross_attn_image.rope_k_repeat
            and la.self_attn.compute_cis.keywords == layers[0].self_attn.compute_cis.keywords
            and la.cross_attn_image.compute_cis.keywords == layers[0].self_attn.compute_cis.keywords
            and not la.pos_enc_at_attn
            and la.pos_enc_at_cross_attn_keys
            and not la.pos_enc_at_cross_attn_queries
            and la.activation_str == "relu"
            for la in layers
        )
        return (
            layer_ok
            and bool(layers)
            and attention.batch_first
            and model._use_multimask(False, None)
            and model.pred_obj_scores
            and decoder.pred_obj_scores
            and decoder.use_high_res_features
            and decoder.use_multimask_token_for_obj_ptr
            and not model.non_overlap_masks_for_mem_enc
            and isinstance(decoder.output_upscaling[1], LayerNorm2d)
            and all(isinstance(block, CXBlock) for block in model.memory_encoder.fuser.layers)
        )

    def memory_attention(
        self, curr: torch.Tensor, memory: torch.Tensor, memory_pos: torch.Tensor, rope_tokens: int
    ) -> torch.Tensor:
        """``MemoryAttention`` on batch-first ``(B, HW, C)`` slices and ``(B, L, C_mem)`` memories.

        ``rope_tokens`` leading memory tokens (the spatial memories) get the rotary encoding; the rest (object
        pointers) do not.
        """
        dim = self.dim
        x = curr + self.curr_pos if self.curr_pos is not None else curr
        keys = F.linear(memory + memory_pos, self.k_weight, self.k_bias)  # (B, L, layers * C)
        values = F.linear(memory, self.v_weight, self.v_bias)
        if rope_tokens:
            rotated = _rotate(keys[:, :rope_tokens].unflatten(-1, (len(self.layers), dim)), self._repeat(rope_tokens))
            rotated = rotated.flatten(2)
            keys = rotated if rope_tokens == keys.shape[1] else torch.cat([rotated, keys[:, rope_tokens:]], dim=1)
        for number, layer in enumerate(self.layers):
            normed = F.layer_norm(x, (dim,), layer.norm1.weight, layer.norm1.bias, layer.norm1.eps)
            qkv = F.linear(normed, self.qkv_weight[number], self.qkv_bias[number])
            qk = _rotate(qkv[..., : 2 * dim].unflatten(-1, (2, dim)), self.freqs)
            attended = F.scaled_dot_product_attention(qk[:, None, :, 0], qk[:, None, :, 1], qkv[:, None, :, 2 * dim :])
            x = x + F.linear(attended[:, 0], layer.self_attn.out_proj.weight, layer.self_attn.out_proj.bias)
            normed = F.layer_norm(x, (dim,), layer.norm2.weight, layer.norm2.bias, layer.norm2.eps)
            cross = layer.cross_attn_image
            query = _rotate(F.linear(normed, cross.q_proj.weight, cross.q_proj.bias), self.freqs[:, 0])
            part = slice(number * dim, (number + 1) * dim)
            attended = F.scaled_dot_product_attention(query[:, None], keys[:, None, :, part], values[:, None, :, part])
            x = x + F.linear(attended[:, 0], cross.out_proj.weight, cross.out_proj.bias)
            normed = F.layer_norm(x, (dim,), layer.norm3.weight, layer.norm3.bias, layer.norm3.eps)
            hidden = F.relu(F.linear(normed, layer.linear1.weight, layer.linear1.bias))
            x = x + F.linear(hidden, layer.linear2.weight, layer.linear2.bias)
        final = self.model.memory_attention.norm
        return F.layer_norm(x, (dim,), final.weight, final.bias, final.eps)

    def _repeat(self, tokens: int) -> torch.Tensor:
        """Rotary encodings of ``tokens`` memory tokens: the slice's encodings once per spatial memory."""
        if tokens not in self._repeated:
            self._repeated[tokens] = self.freqs.repeat(tokens // self.freqs.shape[0], 1, 1)
        return self._repeated[tokens]

    def heads(
        self, conditioned: torch.Tensor, high_res_features: list[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``SAM2Base._forward_sam_heads`` without prompts, multimask output (the tracking setting).

        Returns
        -------
        low_res : (B, 1, S/4, S/4) float32
        high_res : (B, 1, S, S) float32
        obj_ptr : (B, C)
        object_score : (B, 1)
        """
        model, decoder = self.model, self.model.sam_mask_decoder
        batch = conditioned.shape[0]
        hs, src = decoder.transformer(
            conditioned + self.dense, self.image_pe.expand(batch, -1, -1, -1), self.tokens.expand(batch, -1, -1)
        )
        src = src.transpose(1, 2).reshape(conditioned.shape)
        dc1, ln1, act1, dc2, act2 = decoder.output_upscaling
        feat_s0, feat_s1 = high_res_features
        upscaled = act2(dc2(act1(_layer_norm_2d(dc1(src) + feat_s1, ln1))) + feat_s0)
        # token 0 scores the object, 1 the mask quality, 2 the single mask, 3.. the multimask outputs
        multimask_tokens = hs[:, 3 : 2 + self.mask_tokens]
        hyper_in = torch.stack(
            [decoder.output_hypernetworks_mlps[i + 1](multimask_tokens[:, i]) for i in range(self.mask_tokens - 1)],
            dim=1,
        )
        ious = decoder.iou_prediction_head(hs[:, 1])[:, 1:]
        object_score = decoder.pred_obj_score_head(hs[:, 0])
        best = torch.argmax(ious, dim=-1)
        rows = self._rows(batch, conditioned.device)
        channels, height, width = upscaled.shape[1:]
        low_res = (hyper_in[rows, best][:, None] @ upscaled.view(batch, channels, height * width)).view(
            batch, 1, height, width
        )
        appearing = object_score > 0
        low_res = torch.where(appearing[:, None, None], low_res, NO_SCORE).float()
        high_res = F.interpolate(
            low_res, size=(model.image_size, model.image_size), mode="bilinear", align_corners=False
        )
        obj_ptr = model.obj_ptr_proj(multimask_tokens[rows, best])
        weight = object_score.sigmoid() if model.soft_no_obj_ptr else appearing.float()
        if model.fixed_no_obj_ptr:
            obj_ptr = weight * obj_ptr
        obj_ptr = obj_ptr + (1 - weight) * model.no_obj_ptr
        return low_res, high_res, obj_ptr, object_score

    def encode_memory(self, features: torch.Tensor, high_res: torch.Tensor, object_score: torch.Tensor) -> torch.Tensor:
        """``SAM2Base._encode_new_memory`` of predicted (not prompted) masks, without the positional encoding."""
        model, encoder = self.model, self.model.memory_encoder
        mask = torch.sigmoid(high_res)
        if model.sigmoid_scale_for_mem_enc != 1.0:
            mask = mask * model.sigmoid_scale_for_mem_enc
        if model.sigmoid_bias_for_mem_enc != 0.0:
            mask = mask + model.sigmoid_bias_for_mem_enc
        for module, is_norm in self.downsampler:
            mask = _layer_norm_2d(mask, module) if is_norm else module(mask)
        x = encoder.fuser.proj(encoder.pix_feat_proj(features) + mask)
        for block in encoder.fuser.layers:
            # ConvNeXt block: depthwise conv, channel LayerNorm, MLP, layer scale, residual
            y = block.dwconv(x).permute(0, 2, 3, 1)
            y = F.layer_norm(y, y.shape[-1:], block.norm.weight, block.norm.bias, block.norm.eps)
            y = block.pwconv2(block.act(block.pwconv1(y)))
            if block.gamma is not None:
                y = block.gamma * y
            x = x + y.permute(0, 3, 1, 2)
        memory = encoder.out_proj(x)
        if model.no_obj_embed_spatial is not None:
            absent = 1 - (object_score > 0).float()
            memory = memory + absent[..., None, None] * model.no_obj_embed_spatial[..., None, None]
        return memory

    def _rows(self, batch: int, device: torch.device) -> torch.Tensor:
        if batch not in self._arange:
            self._arange[batch] = torch.arange(batch, device=device)
        return self._arange[batch]


def _layer_norm_2d(x: torch.Tensor, norm: Any) -> torch.Tensor:
    """SAM2's ``LayerNorm2d`` (over the channels of ``(B, C, H, W)``) as one ``layer_norm`` on channels last."""
    normed = F.layer_norm(x.permute(0, 2, 3, 1), x.shape[1:2], norm.weight, norm.bias, norm.eps)
    return normed.permute(0, 3, 1, 2)


def _rotate(x: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
    """SAM2's rotary encoding (``apply_rotary_enc``): channel pairs as complex numbers times ``freqs``."""
    pairs = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))
    return torch.view_as_real(pairs * freqs).flatten(-2).type_as(x)
