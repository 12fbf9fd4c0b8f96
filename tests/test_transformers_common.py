"""transformers' OWN common model tests (`ModelTesterMixin`, `ConfigTester`) on PPTDeiTModel and
PPTDeiTForImageClassification, with compression on, the way transformers tests its DeiT
(tests/models/deit/test_modeling_deit.py there).

The test modules come from the transformers sdist of the installed version, laid out by
`python scripts/fetch_transformers_tests.py` (which `bash .ci/run` runs) in ~/.cache/ppt-deit/transformers-tests/ (or
$PPT_TRANSFORMERS_TESTS); without them this module is skipped with a message naming that command.

Where a common test assumes one sequence length for every layer, it is extended here with the lengths the PPT
schedule gives (hidden states and attentions shrink after each reduction layer); tests about text, generation,
caches, GPUs and other modalities are skipped by the mixin itself.
"""

from __future__ import annotations

import copy
import os
import sys
import unittest
from pathlib import Path
from unittest import mock

import pytest
import torch
import transformers

from modeling_ppt_deit import (
    SCORE_FUNCTIONS,
    PPTDeiTConfig,
    PPTDeiTForImageClassification,
    PPTDeiTModel,
    register_score_function,
)


_ROOT = Path(os.environ.get("PPT_TRANSFORMERS_TESTS", Path.home() / ".cache" / "ppt-deit" / "transformers-tests"))
_TESTS = _ROOT / transformers.__version__
if not (_TESTS / "transformers_common_tests" / "test_modeling_common.py").is_file():
    pytest.skip(
        f"transformers {transformers.__version__}'s common model tests are not in {_TESTS}: run "
        "`python scripts/fetch_transformers_tests.py` (needs PyPI; `bash .ci/run` does it)",
        allow_module_level=True,
    )
pytest.importorskip("parameterized", reason="transformers' common tests need `parameterized`: pip install -e '.[test]'")
sys.path.insert(0, str(_TESTS))

from parameterized import parameterized  # noqa: E402

import transformers_common_tests.test_modeling_common as modeling_common  # noqa: E402
from transformers_common_tests.test_configuration_common import ConfigTester  # noqa: E402
from transformers_common_tests.test_modeling_common import ModelTesterMixin, floats_tensor, ids_tensor  # noqa: E402


POSITION_SCORE = "_test_common_position"


def _position_score(inputs):
    """Scores by position (later = higher): no near-ties, the same whatever the attention kernel computed."""
    batch, tokens = inputs.value_norm.shape
    return torch.arange(1, tokens - inputs.num_protected + 1, dtype=inputs.value_norm.dtype).expand(batch, -1)


class PPTDeiTModelTester:
    """A tiny PPT-DeiT with compression on: 16 px images, 2 px patches -> 64 patches + CLS = 65 tokens; r = 8 at
    layer 0 and r = 4 at layer 1 (the common tests want at most 2 layers): 65 -> 57 -> 53 tokens. tau is between typical score variances of random
    weights and inputs, so batches mix pruned and pooled images."""

    def __init__(
        self,
        parent,
        batch_size=6,
        image_size=16,
        patch_size=2,
        num_channels=3,
        is_training=True,
        use_labels=True,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        hidden_act="gelu",
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
        type_sequence_label_size=10,
        initializer_range=0.02,
        reduction_layers=(0, 1),
        tokens_removed=(8, 4),
        prune_threshold=2e-5,
        score_function="ats",
        attn_implementation="eager",
    ):
        self.parent = parent
        self.batch_size = batch_size
        self.image_size = image_size
        self.patch_size = patch_size
        self.num_channels = num_channels
        self.is_training = is_training
        self.use_labels = use_labels
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.hidden_act = hidden_act
        self.hidden_dropout_prob = hidden_dropout_prob
        self.attention_probs_dropout_prob = attention_probs_dropout_prob
        self.type_sequence_label_size = type_sequence_label_size
        self.initializer_range = initializer_range
        self.reduction_layers = list(reduction_layers)
        self.tokens_removed = list(tokens_removed)
        self.prune_threshold = prune_threshold
        self.score_function = score_function
        self.attn_implementation = attn_implementation
        # The length entering the model (what the common tests check for the embeddings and the first layer) ...
        self.seq_length = (image_size // patch_size) ** 2 + 1
        # ... and per layer, (tokens in attention, tokens after the layer), for the PPT-aware checks below.
        self.token_schedule = self.get_config().token_schedule()

    def prepare_config_and_inputs(self):
        pixel_values = floats_tensor([self.batch_size, self.num_channels, self.image_size, self.image_size])
        labels = ids_tensor([self.batch_size], self.type_sequence_label_size) if self.use_labels else None
        return self.get_config(), pixel_values, labels

    def get_config(self):
        return PPTDeiTConfig(
            image_size=self.image_size,
            patch_size=self.patch_size,
            num_channels=self.num_channels,
            hidden_size=self.hidden_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            intermediate_size=self.intermediate_size,
            hidden_act=self.hidden_act,
            hidden_dropout_prob=self.hidden_dropout_prob,
            attention_probs_dropout_prob=self.attention_probs_dropout_prob,
            initializer_range=self.initializer_range,
            num_labels=self.type_sequence_label_size,
            reduction_layers=self.reduction_layers,
            tokens_removed=self.tokens_removed,
            prune_threshold=self.prune_threshold,
            score_function=self.score_function,
            attn_implementation=self.attn_implementation,
        )

    def create_and_check_model(self, config, pixel_values, labels):
        model = PPTDeiTModel(config).eval()
        with torch.no_grad():
            result = model(pixel_values, output_compression=True)
        final_tokens = self.token_schedule[-1][1]
        self.parent.assertEqual(result.last_hidden_state.shape, (self.batch_size, final_tokens, self.hidden_size))
        self.parent.assertEqual(
            [(r.layer_index, r.tokens_before, r.tokens_after) for r in result.compression], [(0, 65, 57), (1, 57, 53)]
        )

    def create_and_check_for_image_classification(self, config, pixel_values, labels):
        model = PPTDeiTForImageClassification(config).eval()
        with torch.no_grad():
            result = model(pixel_values, labels=labels)
        self.parent.assertEqual(result.logits.shape, (self.batch_size, self.type_sequence_label_size))
        # greyscale images
        config = copy.deepcopy(config)
        config.num_channels = 1
        model = PPTDeiTForImageClassification(config).eval()
        pixel_values = floats_tensor([self.batch_size, 1, self.image_size, self.image_size])
        with torch.no_grad():
            result = model(pixel_values, labels=labels)
        self.parent.assertEqual(result.logits.shape, (self.batch_size, self.type_sequence_label_size))

    def prepare_config_and_inputs_for_common(self):
        config, pixel_values, _ = self.prepare_config_and_inputs()
        return config, {"pixel_values": pixel_values}


class PPTDeiTModelTest(ModelTesterMixin, unittest.TestCase):
    """ModelTesterMixin over both PPT-DeiT classes. Overridden here (each calls the common test, then adds to it):
    `test_attention_outputs` and `test_hidden_states_output` also check every layer's length against the PPT
    schedule (the common tests check the first layer only, as a fixed-length model has one length)."""

    all_model_classes = (PPTDeiTModel, PPTDeiTForImageClassification)
    test_resize_embeddings = False  # no token embeddings in an image model (as transformers' DeiT tests)

    @classmethod
    def setUpClass(cls):
        # The mixin tells base models (no loss, skipped by the training tests) and image classifiers (given labels) by
        # transformers' auto-mapping names. An in-tree model is listed there; ours is added to the test module's view
        # of those two tables only (transformers' own tables stay as they are).
        cls._mapping_patches = [
            mock.patch.object(modeling_common, "MODEL_MAPPING_NAMES",
                              {**modeling_common.MODEL_MAPPING_NAMES, "ppt_deit": "PPTDeiTModel"}),
            mock.patch.object(modeling_common, "MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES",
                              {**modeling_common.MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES,
                               "ppt_deit": "PPTDeiTForImageClassification"}),
        ]
        for patch in cls._mapping_patches:
            patch.start()
        register_score_function(POSITION_SCORE, _position_score, override=True)

    @classmethod
    def tearDownClass(cls):
        for patch in cls._mapping_patches:
            patch.stop()
        SCORE_FUNCTIONS.pop(POSITION_SCORE, None)

    def setUp(self):
        self.model_tester = PPTDeiTModelTester(self)
        self.config_tester = ConfigTester(self, config_class=PPTDeiTConfig, has_text_modality=False, hidden_size=32)

    # ---- ConfigTester ----------------------------------------------------------------------------------------------

    def test_config(self):
        # run_common_tests minus check_config_arguments_init, whose table of every PreTrainedConfig argument lives in
        # transformers' repository (tests/utils), not in the sdist.
        tester = self.config_tester
        tester.create_and_test_config_common_properties()
        tester.create_and_test_config_to_json_string()
        tester.create_and_test_config_to_json_file()
        tester.create_and_test_config_from_and_save_pretrained()
        tester.create_and_test_config_from_and_save_pretrained_subfolder()
        tester.create_and_test_config_from_and_save_pretrained_composite()
        tester.create_and_test_config_with_num_labels()
        tester.create_and_test_config_from_pretrained_custom_kwargs()
        tester.check_config_can_be_init_without_params()

    # ---- model-specific checks (as DeiTModelTest has them) -----------------------------------------------------------

    def test_model(self):
        self.model_tester.create_and_check_model(*self.model_tester.prepare_config_and_inputs())

    def test_for_image_classification(self):
        self.model_tester.create_and_check_for_image_classification(*self.model_tester.prepare_config_and_inputs())

    @unittest.skip(reason="PPT-DeiT takes pixel_values, not inputs_embeds (as transformers' DeiT)")
    def test_inputs_embeds(self):
        pass

    def test_model_get_set_embeddings(self):
        # As transformers' DeiT test: the input embeddings of an image model are its patch embeddings (a conv), not an
        # nn.Embedding, and there are no output embeddings to tie.
        config, _ = self.model_tester.prepare_config_and_inputs_for_common()
        for model_class in self.all_model_classes:
            model = model_class(config)
            self.assertIs(model.get_input_embeddings(), model.base_model.embeddings.patch_embeddings)
            self.assertIsNone(model.get_output_embeddings())

    # ---- PPT-aware versions of the tests that assume one sequence length ---------------------------------------------

    def test_attention_outputs(self):
        super().test_attention_outputs()
        config, inputs_dict = self.model_tester.prepare_config_and_inputs_for_common()
        heads = self.model_tester.num_attention_heads
        for model_class in self.all_model_classes:
            model = model_class._from_config(config, attn_implementation="eager").eval()
            with torch.no_grad():
                attentions = model(**inputs_dict, output_attentions=True).attentions
            self.assertEqual(
                [tuple(a.shape[1:]) for a in attentions],
                [(heads, n, n) for n, _ in self.model_tester.token_schedule],  # 65, 57, 53
            )
            for attention in attentions:  # rows are distributions over the (shrinking) keys
                torch.testing.assert_close(attention.sum(-1), torch.ones(attention.shape[:-1]))

    def test_hidden_states_output(self):
        super().test_hidden_states_output()
        config, inputs_dict = self.model_tester.prepare_config_and_inputs_for_common()
        schedule = self.model_tester.token_schedule
        expected = [schedule[0][0]] + [after for _, after in schedule]  # embeddings, then each layer: 65 57 53 53
        for model_class in self.all_model_classes:
            model = model_class(config).eval()
            with torch.no_grad():
                hidden_states = model(**inputs_dict, output_hidden_states=True).hidden_states
            self.assertEqual([h.shape[1] for h in hidden_states], expected)
            self.assertEqual({h.shape[2] for h in hidden_states}, {self.model_tester.hidden_size})

    @parameterized.expand(modeling_common.TEST_EAGER_MATCHES_SDPA_INFERENCE_PARAMETERIZATION)
    def test_eager_matches_sdpa_inference(
        self, name, dtype, padding_side, use_attention_mask, output_attentions, enable_kernels
    ):
        # In half precision eager and SDPA attention differ by ~1e-3, enough to flip PPT's discrete choices (which
        # tokens to keep or merge, prune or pool) wherever two candidates nearly tie among 64 scores; one flip changes
        # a sample's output completely, so the common test would fail at random. In fp16 / bf16 the choices are
        # pinned (scores by position, tau = 0: top-k by position, identical under both kernels) and the test compares
        # what it is about, the attention numerics; fp32 runs the tester's schedule (ats, mixed policies) as it is.
        if dtype != "fp32":
            self.model_tester.score_function = POSITION_SCORE
            self.model_tester.prune_threshold = 0.0
        modeling_common._test_eager_matches_sdpa_inference(
            self, name, dtype, padding_side, use_attention_mask, output_attentions, enable_kernels
        )
