"""RoBERTa for sequence classification in plain PyTorch (transformers is not installed here): the oracle side
of hessgap's src/models/transformer_text.cpp for tests and benchmarks. Hugging Face's parameter names, so
state dicts load both ways; embeddings LayerNorm(word + token_type + position) with RoBERTa's
padding-aware position ids, post-LN encoder layers with exact (erf) GELU, eager attention
softmax(QK^T/sqrt(d) + (1 - mask) * finfo.min) V, head out_proj(tanh(dense(x[:, 0]))); Hugging Face's init
(N(0, 0.02^2) weights, zero biases, LayerNorm (1, 0), zero padding rows). Checked against Hugging Face's
logits on tests/fixtures/hf/roberta-tiny by bench/models/reference_models.py --fixture.
Written for hessgap (not copied).
"""
import json
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class RobertaConfig:
    """roberta-base's shapes; `path` (a Hugging Face config.json) overrides them."""
    vocab_size = 50265
    hidden_size = 768
    num_hidden_layers = 12
    num_attention_heads = 12
    intermediate_size = 3072
    max_position_embeddings = 514
    type_vocab_size = 1
    layer_norm_eps = 1e-5
    pad_token_id = 1

    def __init__(self, path=None):
        if path:
            with open(path) as f:
                cfg = json.load(f)
            for k in list(vars(RobertaConfig)):
                if not k.startswith("_") and k in cfg:
                    setattr(self, k, cfg[k])


class Holder(nn.Module):
    """An empty module that only carries a level of the dotted parameter names."""


class SelfAttention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.query = nn.Linear(c.hidden_size, c.hidden_size)
        self.key = nn.Linear(c.hidden_size, c.hidden_size)
        self.value = nn.Linear(c.hidden_size, c.hidden_size)
        self.heads = c.num_attention_heads

    def forward(self, x, additive_mask):
        B, T, D = x.shape
        d = D // self.heads

        def split(t):
            return t.view(B, T, self.heads, d).transpose(1, 2)

        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        scores = torch.matmul(q, k.transpose(2, 3)) * (1.0 / math.sqrt(d)) + additive_mask
        ctx = torch.matmul(torch.softmax(scores, -1), v)
        return ctx.transpose(1, 2).reshape(B, T, D)


class EncoderLayer(nn.Module):
    def __init__(self, c):
        super().__init__()
        D, eps = c.hidden_size, c.layer_norm_eps
        self.attention = Holder()
        self.attention.self = SelfAttention(c)
        self.attention.output = Holder()
        self.attention.output.dense = nn.Linear(D, D)
        self.attention.output.LayerNorm = nn.LayerNorm(D, eps=eps)
        self.intermediate = Holder()
        self.intermediate.dense = nn.Linear(D, c.intermediate_size)
        self.output = Holder()
        self.output.dense = nn.Linear(c.intermediate_size, D)
        self.output.LayerNorm = nn.LayerNorm(D, eps=eps)

    def forward(self, x, additive_mask):
        a = self.attention
        x = a.output.LayerNorm(a.output.dense(a.self(x, additive_mask)) + x)
        h = F.gelu(self.intermediate.dense(x))
        return self.output.LayerNorm(self.output.dense(h) + x)


class RobertaForSequenceClassification(nn.Module):
    def __init__(self, c, num_labels):
        super().__init__()
        D = c.hidden_size
        self.c = c
        self.roberta = Holder()
        e = self.roberta.embeddings = Holder()
        e.word_embeddings = nn.Embedding(c.vocab_size, D, padding_idx=c.pad_token_id)
        e.token_type_embeddings = nn.Embedding(c.type_vocab_size, D)
        e.LayerNorm = nn.LayerNorm(D, eps=c.layer_norm_eps)
        e.position_embeddings = nn.Embedding(c.max_position_embeddings, D, padding_idx=c.pad_token_id)
        self.roberta.encoder = Holder()
        self.roberta.encoder.layer = nn.ModuleList(EncoderLayer(c) for _ in range(c.num_hidden_layers))
        self.classifier = Holder()
        self.classifier.dense = nn.Linear(D, D)
        self.classifier.out_proj = nn.Linear(D, num_labels)
        self._init_weights()

    @torch.no_grad()
    def _init_weights(self):
        for m in self.modules():
            if isinstance(m, nn.Linear):
                m.weight.normal_(0.0, 0.02)
                m.bias.zero_()
            elif isinstance(m, nn.Embedding):
                m.weight.normal_(0.0, 0.02)
                if m.padding_idx is not None:
                    m.weight[m.padding_idx].zero_()
            elif isinstance(m, nn.LayerNorm):
                m.weight.fill_(1.0)
                m.bias.zero_()

    def forward(self, ids, attention_mask, token_type_ids):
        c, e = self.c, self.roberta.embeddings
        B, T = ids.shape
        not_pad = ids.ne(c.pad_token_id).long()
        positions = torch.cumsum(not_pad, 1) * not_pad + c.pad_token_id
        x = e.word_embeddings(ids) + e.token_type_embeddings(token_type_ids)
        x = e.LayerNorm(x + e.position_embeddings(positions))
        mask = attention_mask.to(x.dtype).view(B, 1, 1, T)
        additive = (1.0 - mask) * torch.finfo(x.dtype).min
        for layer in self.roberta.encoder.layer:
            x = layer(x, additive)
        return self.classifier.out_proj(torch.tanh(self.classifier.dense(x[:, 0])))


def roberta_hessian_layers(model):
    names = []
    for i in range(len(model.roberta.encoder.layer)):
        p = f"roberta.encoder.layer.{i}."
        names += [p + n + ".weight" for n in ("attention.self.query", "attention.self.key", "attention.self.value",
                                              "attention.output.dense", "intermediate.dense", "output.dense")]
    return names + ["classifier.dense.weight", "classifier.out_proj.weight"]
