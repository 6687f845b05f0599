"""Extreme-token phenomena: attention sinks, active-dormant heads, massive activations and their
training dynamics, and the Bigram-Backcopy toy model that shows the mechanism (METHODS.md §7)."""

from .domains import Domain, default_domains, domain_tokens, domains_from_dir
from .sinks import SinkStats, sink_stats

__all__ = ["Domain", "SinkStats", "default_domains", "domain_tokens", "domains_from_dir", "sink_stats"]
