// Flags shared by `sample`, `eval` and `bench`: the two stages' sampling settings.
#pragma once
#include <CLI/CLI.hpp>

#include "pipeline/generate.h"

namespace ctfgen::cli {

/// --cfg --cfg-interval --temperature --top-k --top-p (stage 1 / baseline) and
/// --aux-cfg --aux-temperature --aux-top-k --aux-top-p --aux-argmax --restrict (stage 2),
/// --batch; defaults are the paper's (CTF paper, arXiv 2503.16194, Table 3).
void add_sampling_flags(CLI::App& app, pipeline::GenerateConfig& config);

/// --tokenizer --model --aux --clusters
void add_generator_file_flags(CLI::App& app, pipeline::GeneratorFiles& files);

}  // namespace ctfgen::cli
