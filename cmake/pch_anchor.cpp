// Anchors the shared precompiled header target; it holds no code of its own.
