// `ctfgen demo`: the main job on the embedded default dataset (see src/pipeline/demo.h).
#include <cstdio>

#include "command.h"
#include "pipeline/demo.h"

namespace ctfgen::cmd_demo {

ctfgen::cli::Action setup(CLI::App& app) {
  auto c = std::make_shared<ctfgen::pipeline::DemoConfig>();
  auto json = std::make_shared<bool>(false);
  app.add_option("--preset", c->preset, "quick (about 10 minutes on 2 cores) or full (about 40 minutes; docs/demo.md)")
      ->check(CLI::IsMember({"quick", "full"}))->capture_default_str();
  app.add_option("--work", c->work_dir, "Work directory; finished stages in it are reused")->capture_default_str();
  app.add_option("--dataset", c->dataset, "fashion-mnist or emoji")
      ->check(CLI::IsMember({"fashion-mnist", "emoji"}))->capture_default_str();
  app.add_option("--data-path,--dataset-path", c->dataset_path,
                 "Dataset location (default: the dataset's own; --dataset-path is a deprecated alias)");
  app.add_option("--alpha-background", c->alpha_background,
                 "Transparent pixels are composited onto: white, black or R,G,B")
      ->capture_default_str();
  app.add_option("--vq-steps", c->vq_steps, "Tokenizer steps (0 = preset)")->check(CLI::Range(int64_t{0}, int64_t{1} << 30));
  app.add_option("--ar-steps", c->ar_steps, "Stage-1 and baseline steps (0 = preset)")->check(CLI::Range(int64_t{0}, int64_t{1} << 30));
  app.add_option("--aux-steps", c->aux_steps, "Stage-2 steps (0 = preset)")->check(CLI::Range(int64_t{0}, int64_t{1} << 30));
  app.add_option("--clusters", c->clusters, "Number of coarse labels K (0 = preset)")->check(CLI::Range(int64_t{0}, int64_t{1} << 20));
  app.add_option("--gpt-preset", c->gpt_preset, "Transformer size preset ('' = the preset's)");
  app.add_flag("!--no-baseline", c->baseline, "Skip the LlamaGen baseline");
  app.add_option("--samples-per-class", c->samples_per_class, "Images per class in the grids")
      ->check(CLI::Range(int64_t{1}, int64_t{64}))->capture_default_str();
  app.add_option("--seed", c->seed, "Seed of every stage")->capture_default_str();
  app.add_flag("--json", *json, "Print the summary as JSON");
  return [c, json] {
    auto s = ctfgen::pipeline::run_demo(*c);
    if (*json) {
      ctfgen::cli::print_json(s.dump(2));
      return;
    }
    std::printf("summary     %s/summary.json\n", c->work_dir.c_str());
    std::printf("CTF grid    %s\n", s["samples_ctf"]["grid"].get<std::string>().c_str());
    if (s.contains("samples_baseline"))
      std::printf("baseline    %s\n", s["samples_baseline"]["grid"].get<std::string>().c_str());
    std::printf("time        %.0f s\n", s["seconds"].get<double>());
  };
}

CTFGEN_COMMAND("demo",
               "Main job: Fashion-MNIST -> tokenizer -> clusters -> CTF stage 1 + 2 (+ baseline) -> "
               "sample grids",
               setup);

}  // namespace ctfgen::cmd_demo
