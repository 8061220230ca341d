// `ctfgen info`: libtorch version, devices, threads, BLAS library and kernel, measured GEMM rate.
#include <cstdio>

#include "command.h"
#include "core/runtime.h"

namespace ctfgen::cmd_info {

struct InfoOptions {
  bool json = false;
  bool no_gemm = false;
};

ctfgen::cli::Action setup_info(CLI::App& app) {
  auto opt = std::make_shared<InfoOptions>();
  app.add_flag("--json", opt->json, "Print as JSON");
  app.add_flag("--no-gemm", opt->no_gemm, "Skip the GEMM measurement");
  return [opt] {
    auto j = ctfgen::runtime::describe(!opt->no_gemm);
    if (opt->json) {
      ctfgen::cli::print_json(j.dump(2));
      return;
    }
    std::printf("ctfgen            %s\n", j["ctfgen_version"].get<std::string>().c_str());
    std::printf("libtorch          %s\n", j["libtorch_version"].get<std::string>().c_str());
    std::string devs;
    for (auto& d : j["devices"]) devs += (devs.empty() ? "" : ", ") + d.get<std::string>();
    std::printf("devices           %s\n", devs.c_str());
    std::printf("threads           %d (of %d available CPUs); ctfgen's parallel loops use %d\n",
                j["threads"].get<int>(), j["available_cpus"].get<int>(),
                j["parallel_loop_threads"].get<int>());
    std::printf("allocator         %s\n", j["allocator_tuned"].get<bool>()
                                              ? "glibc, tuned (large blocks from the heap, trim at 1 GiB)"
                                              : "glibc defaults (MALLOC_* or CTFGEN_KEEP_MALLOC set)");
    const auto& b = j["blas"];
    std::printf("BLAS              %s (%s)\n", b["name"].get<std::string>().c_str(),
                b["library"].get<std::string>().c_str());
    std::printf("BLAS kernel       %s (OPENBLAS_CORETYPE=%s; best for this CPU: %s)\n",
                b["coretype"].get<std::string>().c_str(),
                b["openblas_coretype_env"].get<std::string>().c_str(),
                b["best_coretype_for_cpu"].get<std::string>().c_str());
    if (j.contains("gemm_fp32_1024_gflops"))
      std::printf("fp32 GEMM 1024^3  %.1f GFLOP/s\n", j["gemm_fp32_1024_gflops"].get<double>());
  };
}

CTFGEN_COMMAND("info", "Print libtorch, device, thread and BLAS facts and a measured GEMM rate",
               setup_info);

}  // namespace ctfgen::cmd_info
