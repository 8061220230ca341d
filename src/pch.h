// Precompiled header for libtorch-heavy translation units (docs/performance.md, "Build time").
// Only used when CTFGEN_USE_PCH is ON; every file still includes what it needs itself.
#pragma once
#include <torch/torch.h>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>
