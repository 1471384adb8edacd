"""The SA model of the reference: the pre-trained pooler, then dropout, then a new linear layer.

The reference builds the same tagger class for SA as for NER (microsoft/MetaXL ``mtrain.py``:
``XLMRSequenceTagger`` / ``BERTSequenceTagger``) and classifies a review with
``forward_classifier(..., for_classification=True)`` (``models.py``): the encoder's pooler
(dense + tanh on the first token, its weights loaded with the checkpoint), dropout with
``hidden_dropout_prob``, then a freshly initialised ``nn.Linear(hidden, num_labels)``.

transformers' ``BertForSequenceClassification`` is already that shape. Its RoBERTa-family
counterpart is not: ``XLMRobertaForSequenceClassification`` builds the encoder without the
pooler and trains a new dense + tanh head in its place. ``PooledRobertaClassifier`` is the
reference's shape for XLM-R (and RoBERTa): it loads ``roberta.pooler.dense`` from the
checkpoint (``XLMRobertaModel(add_pooling_layer=True)``).

Where the checkpoint has no pooler weights (``tiny-pretrained``, saved from a masked-LM model;
the random-init ``tiny`` and ``base-random``), the pooler is a freshly initialised dense + tanh
on the first token; ``load_backbone`` says so on one line.

The pooler lives in the base model, so ``EncoderSplit.tail_logits`` (model/tail.py), which runs
the model's own forward on the layers above a placement, applies pooler -> dropout -> linear
after the last layer, as the reference's ``forward_tail`` + ``forward_classifier`` do.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PretrainedConfig
from transformers.modeling_outputs import SequenceClassifierOutput
from transformers.models.xlm_roberta.modeling_xlm_roberta import XLMRobertaModel, XLMRobertaPreTrainedModel

# Model types whose transformers sequence-classification head replaces the pooler.
POOLED_ROBERTA_TYPES = frozenset({"xlm-roberta", "roberta"})
# Model types whose transformers sequence-classification head is already pooler -> dropout -> linear.
POOLER_HEAD_TYPES = frozenset({"bert"})

FRESH_POOLER = (
    "SA head: the checkpoint has no pooler weights, so the pooler is a freshly initialised dense + tanh "
    "on the first token (then dropout and a new linear layer, as the reference)"
)


class PooledRobertaClassifier(XLMRobertaPreTrainedModel):
    """XLM-R (or RoBERTa) encoder with its pooler, dropout and a new linear layer over the
    pooled first token: the reference's ``forward_classifier(for_classification=True)``."""

    def __init__(self, config: PretrainedConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.roberta = XLMRobertaModel(config, add_pooling_layer=True)
        # The reference's tagger uses hidden_dropout_prob (not classifier_dropout).
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs,
    ) -> SequenceClassifierOutput:
        outputs = self.roberta(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            return_dict=True,
            **kwargs,
        )
        logits = self.classifier(self.dropout(outputs.pooler_output))
        loss = F.cross_entropy(logits, labels.to(logits.device)) if labels is not None else None
        return SequenceClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


def uses_pooled_roberta(model_config: PretrainedConfig) -> bool:
    return model_config.model_type in POOLED_ROBERTA_TYPES
