"""Evolve attention mechanisms: genes of similarity, normalization, gating and temperature, scored by perplexity."""
__version__ = "0.1.0"

from evo_attention.config import Config
from evo_attention.genes import AttentionGene, ModernGene
from evo_attention.evolution import Evolution

__all__ = ['Config', 'AttentionGene', 'ModernGene', 'Evolution']
