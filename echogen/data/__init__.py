"""Raw dataset ingestion, harmonised manifests and derived data (clips, frames, flow)."""
