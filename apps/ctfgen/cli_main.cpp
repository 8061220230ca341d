// ctfgen: one program, many subcommands. run_main() owns process setup (BLAS kernels, threads,
// verbosity) and is the single place that catches errors: exit 0 ok, 1 error, 2 usage.
// apps/main.cpp (the shipped program) only calls it; tests/crash_main.cpp (a test-only program)
// installs the crash-injection write observer first.
#include <c10/util/Exception.h>

#include <algorithm>
#include <cstdio>
#include <iostream>

#include "command.h"
#include "core/device.h"
#include "core/error.h"
#include "core/log.h"
#include "core/runtime.h"

namespace ctfgen::cli {
std::vector<CommandSpec>& registry() {
  static std::vector<CommandSpec> r;
  return r;
}
void print_json(const std::string& text) { std::cout << text << std::endl; }
}  // namespace ctfgen::cli

int ctfgen::cli::run_main(int argc, char** argv) {
  using namespace ctfgen;
  runtime::prepare_process(argc, argv);
  CLI::App app{"ctfgen " CTFGEN_VERSION
               ": autoregressive image generation with coarse-to-fine token prediction"};
  app.set_version_flag("--version", CTFGEN_VERSION);
  int verbosity = 1;
  int threads = 0;
  std::string device = "cpu";
  app.add_option("-v,--verbosity", verbosity, "0 = results and warnings only, 1 = info, 2 = debug")
      ->check(CLI::Range(0, 2))
      ->capture_default_str();
  app.add_option("--threads", threads, "CPU threads for libtorch and BLAS (0 = all available)")
      ->check(CLI::Range(0, 4096))
      ->capture_default_str();
  app.add_option("--device", device,
                 "where models run: cpu, cuda or cuda:N (needs a CUDA-enabled libtorch); the seeded "
                 "draws (sampling, data order, noise) are made on the CPU, so a seed gives the "
                 "same draws on any device")
      ->capture_default_str();
  app.require_subcommand(1);
  auto& specs = cli::registry();
  std::sort(specs.begin(), specs.end(),
            [](const cli::CommandSpec& a, const cli::CommandSpec& b) { return a.name < b.name; });
  std::vector<std::pair<CLI::App*, cli::Action>> actions;
  // An empty value is never meaningful (an empty --out would write into "/"): refuse it for
  // every option that takes a value.
  const CLI::Validator non_empty(
      [](std::string& v) { return v.empty() ? std::string("must not be empty") : std::string(); },
      "", "NON_EMPTY");
  for (auto& spec : specs) {
    CLI::App* sub = app.add_subcommand(spec.name, spec.help);
    actions.emplace_back(sub, spec.setup(*sub));
    for (CLI::Option* opt : sub->get_options())
      if (opt->get_type_size() > 0) opt->check(non_empty);
  }
  // CLI11 reports a mistyped command as "A subcommand is required"; name it instead.
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "-v" || a == "--verbosity" || a == "--threads" || a == "--device") {
      ++i;
      continue;
    }
    if (a.empty() || a[0] == '-') continue;
    if (std::none_of(specs.begin(), specs.end(), [&](const cli::CommandSpec& s) { return s.name == a; })) {
      std::string names;
      for (const auto& s : specs) names += (names.empty() ? "" : ", ") + s.name;
      std::fprintf(stderr, "error: unknown command '%s' (commands: %s)\nRun with --help for usage.\n",
                   a.c_str(), names.c_str());
      return 2;
    }
    break;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "error: %s\nRun with --help for usage.\n", e.what());
    return 2;
  }
  log::set_verbosity(verbosity);
  try {
    runtime::set_threads(threads);
    set_default_device(parse_device(device));
    for (auto& [sub, action] : actions)
      if (sub->parsed()) action();
  } catch (const UsageError& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
  } catch (const Interrupted& e) {
    std::fprintf(stderr, "interrupted: %s\n", e.what());
    return 130;
  } catch (const c10::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what_without_backtrace());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
