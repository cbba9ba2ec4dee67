"""The zstd dictionary of the documents section of a version-3 index (``docs/FORMAT.md``).

The ``config``, ``training``, ``summary``, ``created`` and ``codec`` JSON documents of every archive
share their keys and most of their values (defaults, the shipped warm-start weights' recipe). Their
section is compressed with :data:`DOCUMENTS_DICTIONARY` as a zstd *raw-content* dictionary: a typical
set of the five documents, written once in format version 3 and never changed (a reader checks
:data:`DOCUMENTS_DICTIONARY_SHA256` when it loads this module). Measured on a 2,000-thumbnail archive:
1,017 bytes without it, 245 with it.
"""

from __future__ import annotations

import hashlib

import zstandard

__all__ = ["DOCUMENTS_DICTIONARY", "DOCUMENTS_DICTIONARY_SHA256", "documents_dictionary"]

DOCUMENTS_DICTIONARY = (
    b'{"appendable":false,"codec":"autoencoder","int8_weights":true,"model":{"latent_channels":16,"res'
    b'_blocks":1,"residual":true,"upsample":"nearest","widths":[16,16,8,8]},"model_size":"tiny","quali'
    b'ty":6,"train":{"batch":8,"check_every":500,"crop":128,"denoiser":false,"denoiser_time":0.0,"devi'
    b'ce":"auto","disc_width":64,"gan":false,"gan_margin_db":1.0,"gan_start":0,"gan_weight":0.1,"lmbda'
    b'":0.0483,"lr":0.001,"lr_drops":2,"max_steps":200000,"perceptual":"none","perceptual_weight":0.03'
    b',"psnr_tol":0.02,"rate_weight":1.0,"refine_steps":30,"refine_time":0.0,"seed":0,"slope_tol":0.00'
    b'5,"time_limit":5.0,"warm_start":true},"zstd_level":19}{"crop":48,"device":"cpu","entropy_model":'
    b'{"candidates":{"S1K1":{"symbol_bytes":10000,"table_bytes":1000},"S1K2":{"symbol_bytes":10000,"ta'
    b'ble_bytes":1000},"S1K3":{"symbol_bytes":10000,"table_bytes":1000},"S1K4":{"symbol_bytes":10000,"'
    b'table_bytes":1000},"S2K1":{"symbol_bytes":10000,"table_bytes":1000},"S2K2":{"symbol_bytes":10000'
    b',"table_bytes":1000},"S2K3":{"symbol_bytes":10000,"table_bytes":1000},"S2K4":{"symbol_bytes":100'
    b'00,"table_bytes":1000},"S3K1":{"symbol_bytes":10000,"table_bytes":1000},"S3K2":{"symbol_bytes":1'
    b'0000,"table_bytes":1000},"S3K3":{"symbol_bytes":10000,"table_bytes":1000},"S3K4":{"symbol_bytes"'
    b':10000,"table_bytes":1000}},"chosen":"S1K1"},"final_loss":38.59228515625,"heldout_psnr":19.87204'
    b'724569688,"history":{"converged":[false,true],"heldout_psnr":[24.1234,24.2345],"loss":[1.23456,1'
    b'.12345],"lr":[0.001,0.0001],"psnr_change":[0.1234,0.0123],"relative_improvement":[0.012345,0.001'
    b'234],"step":[500,1000]},"processes":1,"refine":{"budget_seconds":2.5,"max_steps":30,"mean_steps"'
    b':7.5,"min_steps":0,"seconds":4.462},"steps":7,"stop_reason":"converged","train_seconds":7.04,"wa'
    b'rm_start":{"name":"tiny","sha256":"bd3211180a4e99e38a98bea590374ff0b19323ec1c1a22b089832c0145d7c'
    b'279","trained":{"command":"python scripts/pretrain.py --preset tiny --time-limit 25m --out /work'
    b'/main/src/archiver/model/weights","commit":"6d55455","data":"88 photos of the \'train\' split of s'
    b'hared/data/dev at scales 1, 1/2, 1/4 (219 images)","date":"2026-11-23T16:44:03+00:00","heldout_p'
    b'snr":22.847,"lmbda":0.013,"quality":4,"seconds":1500.1,"steps":41846,"stop_reason":"time_limit"}'
    b'}}{"files":1,"folders":2,"images":4,"input_bytes":5925,"latent_bytes":168,"mean_psnr":18.3589723'
    b'93953202,"pack_seconds":14.747,"pixels":3321,"symlinks":0}{"archiver_version":"0.1.0","created_u'
    b'tc":"2026-12-02T00:00:00+00:00"}{}'
)
DOCUMENTS_DICTIONARY_SHA256 = "66420e9a98f6824dad840e8ffe0d0bdaa0224e500374e1a6f1cd84c091e8a73d"
assert hashlib.sha256(DOCUMENTS_DICTIONARY).hexdigest() == DOCUMENTS_DICTIONARY_SHA256, "the v3 dictionary changed"


def documents_dictionary() -> zstandard.ZstdCompressionDict:
    """:data:`DOCUMENTS_DICTIONARY` as a zstd raw-content dictionary."""
    return zstandard.ZstdCompressionDict(DOCUMENTS_DICTIONARY, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
