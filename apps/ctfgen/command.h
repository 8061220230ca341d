// Subcommand registry. Each cmd_<name>.cpp keeps its code in namespace ctfgen::cmd_<name> (unity
// builds compile several of them as one translation unit, so anonymous namespaces would clash)
// and registers itself with CTFGEN_COMMAND; the setup function
// declares the subcommand's flags on `app` (bound to an options struct it owns) and returns the
// action main() runs after parsing. Flags are declared once: --help and docs/cli.md come from them.
#pragma once
#include <CLI/CLI.hpp>
#include <functional>
#include <string>
#include <vector>

namespace ctfgen::cli {

using Action = std::function<void()>;
using Setup = std::function<Action(CLI::App& app)>;

struct CommandSpec {
  std::string name;
  std::string help;
  Setup setup;
};

std::vector<CommandSpec>& registry();

struct Registrar {
  explicit Registrar(CommandSpec spec) { registry().push_back(std::move(spec)); }
};

/// The whole program: parses argv, runs the command, maps errors to exit codes.
int run_main(int argc, char** argv);

/// Prints a JSON value to stdout (results channel), pretty when asked.
void print_json(const std::string& text);

}  // namespace ctfgen::cli

#define CTFGEN_CONCAT_INNER(a, b) a##b
#define CTFGEN_CONCAT(a, b) CTFGEN_CONCAT_INNER(a, b)
#define CTFGEN_COMMAND(name, help, setup_fn) \
  static ::ctfgen::cli::Registrar CTFGEN_CONCAT(ctfgen_cmd_, __LINE__)({name, help, setup_fn})
