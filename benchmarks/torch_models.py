"""The ORIGINAL AttnGAN networks and losses in modern PyTorch, for ``torch_reference.py`` only.

Re-written from the reference (``/work/shared/reference/attngan_reference.md`` §3-8) with the
original's module structure, so ``state_dict()`` keys equal the original's (``h_net2.att.
conv_context.weight``, ``img_code_s16.2.weight``, ``Mixed_6e.branch7x7dbl_3.bn.running_var`` ...)
and the parity fixtures load with ``strict=True``. Kept on purpose: the misaligned attention mask
(§5.1), ``align_corners=True`` resize (PyTorch 0.3), the per-caption ``words_loss`` loop, Sigmoid
heads + ``BCELoss``, masks filled through ``.data``. Layout NCHW, word features (B, D, T).
No torchvision: the Inception-v3 blocks are written out from §4. Not a runtime dependency.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


class GLU(nn.Module):
    def forward(self, x):
        nc = x.size(1) // 2
        return x[:, :nc] * torch.sigmoid(x[:, nc:])


def conv1x1(i, o):
    return nn.Conv2d(i, o, 1, 1, 0, bias=False)


def conv3x3(i, o):
    return nn.Conv2d(i, o, 3, 1, 1, bias=False)


def up_block(i, o):
    return nn.Sequential(
        nn.Upsample(scale_factor=2, mode="nearest"), conv3x3(i, 2 * o), nn.BatchNorm2d(2 * o), GLU()
    )


class ResBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.block = nn.Sequential(
            conv3x3(c, 2 * c), nn.BatchNorm2d(2 * c), GLU(), conv3x3(c, c), nn.BatchNorm2d(c)
        )

    def forward(self, x):
        return self.block(x) + x


# ----------------------------------------------------------------------------- text encoder (§3)
class RNN_ENCODER(nn.Module):  # noqa: N801  (original names)
    def __init__(self, ntoken, ninput=300, nhidden=256, drop_prob=0.5):
        super().__init__()
        self.nhidden = nhidden
        self.encoder = nn.Embedding(ntoken, ninput)
        self.drop = nn.Dropout(drop_prob)
        self.rnn = nn.LSTM(ninput, nhidden // 2, 1, batch_first=True, bidirectional=True)
        self.encoder.weight.data.uniform_(-0.1, 0.1)

    def forward(self, captions, cap_lens):
        """(B, L) ids, (B,) descending lengths -> words (B, D, max len), sentence (B, D)."""
        b = captions.size(0)
        h0 = captions.new_zeros((2, b, self.nhidden // 2), dtype=torch.float32)
        emb = self.drop(self.encoder(captions))
        packed = pack_padded_sequence(emb, cap_lens.cpu().tolist(), batch_first=True)
        out, hidden = self.rnn(packed, (h0, h0.clone()))
        out = pad_packed_sequence(out, batch_first=True)[0]
        words = out.transpose(1, 2)
        sent = hidden[0].transpose(0, 1).contiguous().view(-1, self.nhidden)
        return words, sent


# ----------------------------------------------------------------------------- Inception (§4)
class BasicConv2d(nn.Module):
    def __init__(self, i, o, **kw):
        super().__init__()
        self.conv = nn.Conv2d(i, o, bias=False, **kw)
        self.bn = nn.BatchNorm2d(o, eps=0.001)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)), inplace=True)


def _avg3(x):
    return F.avg_pool2d(x, 3, 1, 1)


class InceptionA(nn.Module):
    def __init__(self, c, pf):
        super().__init__()
        self.branch1x1 = BasicConv2d(c, 64, kernel_size=1)
        self.branch5x5_1 = BasicConv2d(c, 48, kernel_size=1)
        self.branch5x5_2 = BasicConv2d(48, 64, kernel_size=5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(c, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)
        self.branch_pool = BasicConv2d(c, pf, kernel_size=1)

    def forward(self, x):
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch1x1(x), b5, b3, self.branch_pool(_avg3(x))], 1)


class InceptionB(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.branch3x3 = BasicConv2d(c, 384, kernel_size=3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(c, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=2)

    def forward(self, x):
        bd = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch3x3(x), bd, F.max_pool2d(x, 3, 2)], 1)


class InceptionC(nn.Module):
    def __init__(self, c, c7):
        super().__init__()
        self.branch1x1 = BasicConv2d(c, 192, kernel_size=1)
        self.branch7x7_1 = BasicConv2d(c, c7, kernel_size=1)
        self.branch7x7_2 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(c, c7, kernel_size=1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(c, 192, kernel_size=1)

    def forward(self, x):
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = self.branch7x7dbl_1(x)
        for m in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4):
            bd = m(bd)
        bd = self.branch7x7dbl_5(bd)
        return torch.cat([self.branch1x1(x), b7, bd, self.branch_pool(_avg3(x))], 1)


class InceptionD(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.branch3x3_1 = BasicConv2d(c, 192, kernel_size=1)
        self.branch3x3_2 = BasicConv2d(192, 320, kernel_size=3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(c, 192, kernel_size=1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, kernel_size=3, stride=2)

    def forward(self, x):
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_1(x)
        for m in (self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            b7 = m(b7)
        return torch.cat([b3, b7, F.max_pool2d(x, 3, 2)], 1)


class InceptionE(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.branch1x1 = BasicConv2d(c, 320, kernel_size=1)
        self.branch3x3_1 = BasicConv2d(c, 384, kernel_size=1)
        self.branch3x3_2a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(c, 448, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, kernel_size=3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(c, 192, kernel_size=1)

    def forward(self, x):
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)
        return torch.cat([self.branch1x1(x), b3, bd, self.branch_pool(_avg3(x))], 1)


class CNN_ENCODER(nn.Module):  # noqa: N801
    """DAMSM image encoder: resize to 299, Inception-v3 to Mixed_7c, two projections (§4)."""

    def __init__(self, nef=256, align_corners=True):
        super().__init__()
        self.align_corners = align_corners
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
        self.Mixed_5b, self.Mixed_5c = InceptionA(192, 32), InceptionA(256, 64)
        self.Mixed_5d, self.Mixed_6a = InceptionA(288, 64), InceptionB(288)
        self.Mixed_6b, self.Mixed_6c = InceptionC(768, 128), InceptionC(768, 160)
        self.Mixed_6d, self.Mixed_6e = InceptionC(768, 160), InceptionC(768, 192)
        self.Mixed_7a, self.Mixed_7b, self.Mixed_7c = (
            InceptionD(768),
            InceptionE(1280),
            InceptionE(2048),
        )
        self.emb_features = conv1x1(768, nef)
        self.emb_cnn_code = nn.Linear(2048, nef)
        self.emb_features.weight.data.uniform_(-0.1, 0.1)
        self.emb_cnn_code.weight.data.uniform_(-0.1, 0.1)

    def forward(self, x):
        if x.shape[-2:] != (299, 299):
            x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=self.align_corners)
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(F.max_pool2d(x, 3, 2)))
        x = F.max_pool2d(x, 3, 2)
        for n in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e"):
            x = getattr(self, "Mixed_" + n)(x)
        features = x
        x = self.Mixed_7c(self.Mixed_7b(self.Mixed_7a(x)))
        x = F.avg_pool2d(x, 8).view(x.size(0), -1)
        return self.emb_features(features), self.emb_cnn_code(x)


# ----------------------------------------------------------------------------- generator (§5-6)
class GlobalAttentionGeneral(nn.Module):
    def __init__(self, idf, cdf):
        super().__init__()
        self.conv_context = conv1x1(cdf, idf)
        self.sm = nn.Softmax(dim=1)
        self.mask = None

    def applyMask(self, mask):  # noqa: N802
        self.mask = mask

    def forward(self, inp, context):
        ih, iw = inp.size(2), inp.size(3)
        q = ih * iw
        b, t = context.size(0), context.size(2)
        target_t = inp.view(b, -1, q).transpose(1, 2).contiguous()
        source_t = self.conv_context(context.unsqueeze(3)).squeeze(3)
        attn = torch.bmm(target_t, source_t).view(b * q, t)
        if self.mask is not None:  # the original's misaligned mask (§5.1 step 4)
            attn.data.masked_fill_(self.mask.repeat(q, 1).data, -float("inf"))
        attn = self.sm(attn).view(b, q, t).transpose(1, 2).contiguous()
        ctx = torch.bmm(source_t, attn).view(b, -1, ih, iw)
        return ctx, attn.view(b, -1, ih, iw)


class CA_NET(nn.Module):  # noqa: N801
    def __init__(self, t_dim, c_dim):
        super().__init__()
        self.c_dim = c_dim
        self.fc = nn.Linear(t_dim, 4 * c_dim, bias=True)
        self.relu = GLU()

    def forward(self, sent, eps=None):
        x = self.relu(self.fc(sent))
        mu, logvar = x[:, : self.c_dim], x[:, self.c_dim :]
        std = logvar.mul(0.5).exp()
        eps = torch.randn_like(std) if eps is None else eps
        return eps.mul(std).add(mu), mu, logvar


class INIT_STAGE_G(nn.Module):  # noqa: N801
    def __init__(self, ngf, nz):
        super().__init__()
        self.gf_dim = ngf
        self.fc = nn.Sequential(
            nn.Linear(nz, ngf * 32, bias=False), nn.BatchNorm1d(ngf * 32), GLU()
        )
        self.upsample1 = up_block(ngf, ngf // 2)
        self.upsample2 = up_block(ngf // 2, ngf // 4)
        self.upsample3 = up_block(ngf // 4, ngf // 8)
        self.upsample4 = up_block(ngf // 8, ngf // 16)

    def forward(self, z, c):
        x = self.fc(torch.cat((c, z), 1)).view(-1, self.gf_dim, 4, 4)
        return self.upsample4(self.upsample3(self.upsample2(self.upsample1(x))))


class NEXT_STAGE_G(nn.Module):  # noqa: N801
    def __init__(self, ngf, nef, r_num):
        super().__init__()
        self.att = GlobalAttentionGeneral(ngf, nef)
        self.residual = nn.Sequential(*[ResBlock(2 * ngf) for _ in range(r_num)])
        self.upsample = up_block(2 * ngf, ngf)

    def forward(self, h, words, mask):
        self.att.applyMask(mask)
        ctx, att = self.att(h, words)
        return self.upsample(self.residual(torch.cat((h, ctx), 1))), att


class GET_IMAGE_G(nn.Module):  # noqa: N801
    def __init__(self, ngf):
        super().__init__()
        self.img = nn.Sequential(conv3x3(ngf, 3), nn.Tanh())

    def forward(self, h):
        return self.img(h)


class G_NET(nn.Module):  # noqa: N801
    def __init__(self, ngf=32, nef=256, nz=100, ncf=100, r_num=2, branch_num=3):
        super().__init__()
        self.branch_num = branch_num
        self.ca_net = CA_NET(nef, ncf)
        self.h_net1, self.img_net1 = INIT_STAGE_G(16 * ngf, nz + ncf), GET_IMAGE_G(ngf)
        if branch_num > 1:
            self.h_net2, self.img_net2 = NEXT_STAGE_G(ngf, nef, r_num), GET_IMAGE_G(ngf)
        if branch_num > 2:
            self.h_net3, self.img_net3 = NEXT_STAGE_G(ngf, nef, r_num), GET_IMAGE_G(ngf)

    def forward(self, z, sent, words, mask, eps=None):
        c, mu, logvar = self.ca_net(sent, eps)
        h = self.h_net1(z, c)
        imgs, atts = [self.img_net1(h)], []
        for i in range(2, self.branch_num + 1):
            h, a = getattr(self, f"h_net{i}")(h, words, mask)
            imgs.append(getattr(self, f"img_net{i}")(h))
            atts.append(a)
        return imgs, atts, mu, logvar, c


# ----------------------------------------------------------------------------- discriminators (§7)
def block3x3_lrelu(i, o):
    return nn.Sequential(conv3x3(i, o), nn.BatchNorm2d(o), nn.LeakyReLU(0.2, inplace=True))


def down_block(i, o):
    return nn.Sequential(
        nn.Conv2d(i, o, 4, 2, 1, bias=False), nn.BatchNorm2d(o), nn.LeakyReLU(0.2, inplace=True)
    )


def encode_image_by_16times(ndf):
    layers = [nn.Conv2d(3, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True)]
    for m in (1, 2, 4):
        layers += [
            nn.Conv2d(ndf * m, ndf * 2 * m, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ndf * 2 * m),
            nn.LeakyReLU(0.2, inplace=True),
        ]
    return nn.Sequential(*layers)


class D_GET_LOGITS(nn.Module):  # noqa: N801
    def __init__(self, ndf, nef, bcondition):
        super().__init__()
        self.ef_dim, self.bcondition = nef, bcondition
        if bcondition:
            self.jointConv = block3x3_lrelu(8 * ndf + nef, 8 * ndf)
        self.outlogits = nn.Sequential(nn.Conv2d(8 * ndf, 1, kernel_size=4, stride=4), nn.Sigmoid())

    def forward(self, h, c=None):
        if self.bcondition and c is not None:
            c = c.view(-1, self.ef_dim, 1, 1).repeat(1, 1, 4, 4)
            h = self.jointConv(torch.cat((h, c), 1))
        return self.outlogits(h).view(-1)


class D_NET(nn.Module):  # noqa: N801
    """D_NET64 / D_NET128 / D_NET256 (``size``) with the uncond head (b_jcu=True)."""

    def __init__(self, size, ndf=64, nef=256):
        super().__init__()
        self.size = size
        self.img_code_s16 = encode_image_by_16times(ndf)
        if size == 128:
            self.img_code_s32 = down_block(8 * ndf, 16 * ndf)
            self.img_code_s32_1 = block3x3_lrelu(16 * ndf, 8 * ndf)
        if size == 256:
            self.img_code_s32 = down_block(8 * ndf, 16 * ndf)
            self.img_code_s64 = down_block(16 * ndf, 32 * ndf)
            self.img_code_s64_1 = block3x3_lrelu(32 * ndf, 16 * ndf)
            self.img_code_s64_2 = block3x3_lrelu(16 * ndf, 8 * ndf)
        self.UNCOND_DNET = D_GET_LOGITS(ndf, nef, bcondition=False)
        self.COND_DNET = D_GET_LOGITS(ndf, nef, bcondition=True)

    def forward(self, x):
        x = self.img_code_s16(x)
        if self.size == 128:
            x = self.img_code_s32_1(self.img_code_s32(x))
        if self.size == 256:
            x = self.img_code_s64_1(self.img_code_s64(self.img_code_s32(x)))
            x = self.img_code_s64_2(x)
        return x


def weights_init(m):
    """``miscc.utils.weights_init`` (§9)."""
    name = m.__class__.__name__
    if "Conv" in name:
        nn.init.orthogonal_(m.weight.data, 1.0)
    elif "BatchNorm" in name:
        m.weight.data.normal_(1.0, 0.02)
        m.bias.data.fill_(0)
    elif "Linear" in name:
        nn.init.orthogonal_(m.weight.data, 1.0)
        if m.bias is not None:
            m.bias.data.fill_(0.0)


# ----------------------------------------------------------------------------- losses (§8)
def cosine_similarity(x1, x2, dim=1, eps=1e-8):
    w12 = torch.sum(x1 * x2, dim)
    return (w12 / (torch.norm(x1, 2, dim) * torch.norm(x2, 2, dim)).clamp(min=eps)).squeeze()


def _class_masks(class_ids):
    b = len(class_ids)
    m = (class_ids[None, :] == class_ids[:, None]) & ~np.eye(b, dtype=bool)
    return torch.from_numpy(m)


def func_attention(query, context, gamma1):
    b, ql = query.size(0), query.size(2)
    ih, iw = context.size(2), context.size(3)
    sl = ih * iw
    context = context.view(b, -1, sl)
    attn = torch.bmm(context.transpose(1, 2).contiguous(), query).view(b * sl, ql)
    attn = F.softmax(attn, dim=1).view(b, sl, ql).transpose(1, 2).contiguous()
    attn = F.softmax(attn.view(b * ql, sl) * gamma1, dim=1).view(b, ql, sl)
    ctx = torch.bmm(context, attn.transpose(1, 2).contiguous())
    return ctx, attn.view(b, -1, ih, iw)


def words_loss(img_features, words_emb, labels, cap_lens, class_ids, gammas):
    """The original's per-caption loop (§8.4); gammas = (γ1, γ2, γ3)."""
    g1, g2, g3 = gammas
    b = img_features.size(0)
    sims = []
    for i in range(b):
        n = int(cap_lens[i])
        word = words_emb[i, :, :n].unsqueeze(0).contiguous().repeat(b, 1, 1)
        ctx, _ = func_attention(word, img_features, g1)
        word = word.transpose(1, 2).contiguous().view(b * n, -1)
        ctx = ctx.transpose(1, 2).contiguous().view(b * n, -1)
        row = cosine_similarity(word, ctx).view(b, n)
        sims.append(torch.log(torch.exp(row * g2).sum(dim=1, keepdim=True)))
    sims = torch.cat(sims, 1) * g3
    if class_ids is not None:
        sims.data.masked_fill_(_class_masks(class_ids).to(sims.device), -float("inf"))
    return F.cross_entropy(sims, labels), F.cross_entropy(sims.transpose(0, 1), labels)


def sent_loss(cnn_code, rnn_code, labels, class_ids, gamma3, eps=1e-8):
    c, r = cnn_code.unsqueeze(0), rnn_code.unsqueeze(0)
    scores = torch.bmm(c, r.transpose(1, 2))
    norm = torch.bmm(
        torch.norm(c, 2, dim=2, keepdim=True), torch.norm(r, 2, dim=2, keepdim=True).transpose(1, 2)
    )
    s0 = (scores / norm.clamp(min=eps) * gamma3).squeeze()
    s1 = s0.transpose(0, 1)
    if class_ids is not None:
        m = _class_masks(class_ids).to(s0.device)
        s0.data.masked_fill_(m, -float("inf"))
        s1.data.masked_fill_(m, -float("inf"))
    return F.cross_entropy(s0, labels), F.cross_entropy(s1, labels)


def discriminator_loss(net_d, real, fake, sent):
    bce = nn.BCELoss()
    b = real.size(0)
    ones, zeros = torch.ones(b, device=real.device), torch.zeros(b, device=real.device)
    real_f, fake_f = net_d(real), net_d(fake.detach())
    cond_real = bce(net_d.COND_DNET(real_f, sent), ones)
    cond_fake = bce(net_d.COND_DNET(fake_f, sent), zeros)
    cond_wrong = bce(net_d.COND_DNET(real_f[: b - 1], sent[1:b]), zeros[1:b])
    real_err = bce(net_d.UNCOND_DNET(real_f), ones)
    fake_err = bce(net_d.UNCOND_DNET(fake_f), zeros)
    return (real_err + cond_real) / 2.0 + (fake_err + cond_fake + cond_wrong) / 3.0


def generator_loss(nets_d, image_encoder, fakes, words, sent, labels, cap_lens, class_ids, g):
    """§8.6: adversarial terms of every stage + λ·DAMSM on the last; g = gammas + (λ,)."""
    bce = nn.BCELoss()
    ones = torch.ones(fakes[0].size(0), device=fakes[0].device)
    total = 0.0
    for i, d in enumerate(nets_d):
        f = d(fakes[i])
        total = total + bce(d.COND_DNET(f, sent), ones) + bce(d.UNCOND_DNET(f), ones)
    region, code = image_encoder(fakes[-1])
    w0, w1 = words_loss(region, words, labels, cap_lens, class_ids, g[:3])
    s0, s1 = sent_loss(code, sent, labels, class_ids, g[2])
    return total + (w0 + w1) * g[3] + (s0 + s1) * g[3]


def kl_loss(mu, logvar):
    return torch.mean(1 + logvar - mu.pow(2) - logvar.exp()).mul(-0.5)
