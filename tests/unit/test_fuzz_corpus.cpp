// Replays every committed fuzz corpus file (fuzz/corpus/<target>/) through the parser its fuzzer
// targets: each input must parse or throw ctfgen::Error -- no other exception, no crash. This runs
// the corpus in CI without clang/libFuzzer.
#include <gtest/gtest.h>

#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/fs.h"
#include "data/dataset.h"
#include "io/idx.h"
#include "io/image_io.h"
#include "io/npy.h"
#include "io/pickle_reader.h"
#include "io/safetensors.h"
#include "io/torch_import.h"
#include "test_util.h"

namespace ctfgen::test {
namespace {

using Parser = std::function<void(const std::vector<uint8_t>&)>;

void replay(const std::string& target, const Parser& parse) {
  const std::string dir = source_dir() + "/fuzz/corpus/" + target;
  ASSERT_TRUE(std::filesystem::is_directory(dir)) << dir;
  int files = 0, ok = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (!e.is_regular_file()) continue;
    auto bytes = fs::read_file(e.path().string());
    ++files;
    try {
      parse(bytes);
      ++ok;
    } catch (const Error&) {
    } catch (const std::exception& ex) {
      ADD_FAILURE() << e.path() << ": non-ctfgen exception: " << ex.what();
    }
  }
  EXPECT_GT(files, 0) << "empty corpus " << dir;
  EXPECT_GT(ok, 0) << "no input of " << dir << " parses; the seeds are missing";
}

}  // namespace

TEST(FuzzCorpus, Safetensors) {
  replay("safetensors", [](const std::vector<uint8_t>& b) {
    auto f = io::parse_safetensors(b.data(), b.size(), "corpus");
    auto again = io::serialize_safetensors(f.tensors, f.metadata);
    io::parse_safetensors(again.data(), again.size(), "corpus-roundtrip");
  });
}

TEST(FuzzCorpus, Npy) {
  replay("npy", [](const std::vector<uint8_t>& b) {
    auto t = io::parse_npy(b.data(), b.size(), "corpus");
    auto again = io::serialize_npy(t);
    io::parse_npy(again.data(), again.size(), "corpus-roundtrip");
  });
}

TEST(FuzzCorpus, Idx) {
  replay("idx", [](const std::vector<uint8_t>& b) { io::parse_idx(b.data(), b.size(), "corpus"); });
}

TEST(FuzzCorpus, Image) {
  replay("image", [](const std::vector<uint8_t>& b) {
    for (int c : {1, 3, 4}) {
      auto img = io::decode_image(b.data(), b.size(), "corpus", c);
      if (c == 4) io::composite_alpha(img);
    }
  });
}

TEST(FuzzCorpus, Config) {
  replay("config", [](const std::vector<uint8_t>& b) {
    auto j = nlohmann::json::parse(b.begin(), b.end(), nullptr, false);
    if (j.is_discarded()) throw Error("not JSON");
    data::DatasetConfig::from_json(j).validate();
  });
}

TEST(FuzzCorpus, TorchImport) {
  // The fuzzer's input layout: first byte even -> a .pt archive follows, odd -> a bare pickle.
  replay("torch_import", [](const std::vector<uint8_t>& b) {
    if (b.empty()) throw Error("empty input");
    if (b[0] % 2 == 0) {
      auto sd = io::read_torch_state_dict_from_memory(b.data() + 1, b.size() - 1, "corpus.pt");
      for (const auto& [name, t] : sd.tensors)
        EXPECT_TRUE(t.is_contiguous()) << name << " is not contiguous";
    } else {
      auto doc = io::pickle::parse(b.data() + 1, b.size() - 1, "corpus.pkl", io::pickle::Limits{});
      (void)doc.describe(doc.root);
    }
  });
}

}  // namespace ctfgen::test
