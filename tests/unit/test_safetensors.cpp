// safetensors reader/writer: every dtype, metadata, malformed files, Python (stdlib + numpy) interop.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstring>

#include "core/error.h"
#include "io/safetensors.h"
#include "test_util.h"

namespace ctfgen::test {
namespace {

// Must match CASES in tests/python/safetensors_interop.py.
const std::vector<DtypeCase> kStCases = {
    {"f64", at::kDouble, {5}},   {"f32", at::kFloat, {2, 3}}, {"f16", at::kHalf, {3, 2}}, {"bf16", at::kBFloat16, {4}},
    {"i64", at::kLong, {3}},     {"i32", at::kInt, {2, 2}},   {"i16", at::kShort, {3}},   {"i8", at::kChar, {6}},
    {"u8", at::kByte, {2, 3}},   {"bool", at::kBool, {7}},    {"scalar", at::kFloat, {}}, {"empty", at::kFloat, {0, 3}}};
const io::Metadata kMeta = {{"format", "ctfgen"}, {"note", "h\xc3\xa9llo \"quoted\""}};

io::NamedTensors all_cases() {
  io::NamedTensors out;
  for (const auto& c : kStCases) out.emplace_back(c.name, patterned_tensor(c.type, c.shape));
  return out;
}

// A safetensors image from a header text and a data section of `data_bytes` zero bytes.
std::vector<uint8_t> file_of(const std::string& header, size_t data_bytes) {
  std::vector<uint8_t> out;
  out.reserve(8 + header.size() + data_bytes);
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<uint8_t>(n >> (8 * i)));
  for (char c : header) out.push_back(static_cast<uint8_t>(c));
  out.resize(out.size() + data_bytes, 0);
  return out;
}

std::string st_error(const std::vector<uint8_t>& b) {
  try {
    io::parse_safetensors(b.data(), b.size(), "probe.safetensors");
  } catch (const Error& e) {
    return e.what();
  } catch (const std::exception& e) {
    return std::string("NON-CTFGEN EXCEPTION: ") + e.what();
  }
  return "<no error>";
}

}  // namespace

TEST(Safetensors, RoundTripEveryDtypeAndMetadata) {
  auto tensors = all_cases();
  auto bytes = io::serialize_safetensors(tensors, kMeta);
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  EXPECT_EQ((8 + n) % 8, 0u);  // data section aligned to 8 bytes
  auto f = io::parse_safetensors(bytes.data(), bytes.size(), "mem");
  EXPECT_EQ(f.metadata, kMeta);
  ASSERT_EQ(f.tensors.size(), kStCases.size());
  for (const auto& c : kStCases) {
    const auto& t = f.get(c.name);
    EXPECT_EQ(t.scalar_type(), c.type) << c.name;
    EXPECT_EQ(t.sizes(), c10::IntArrayRef(c.shape)) << c.name;
    EXPECT_TRUE(torch::equal(t, patterned_tensor(c.type, c.shape))) << c.name;
  }
  EXPECT_THROW(f.get("nope"), Error);
  TempDir d;
  io::save_safetensors(d.file("a.safetensors"), tensors, {});
  auto g = io::load_safetensors(d.file("a.safetensors"));
  EXPECT_TRUE(g.metadata.empty());
  EXPECT_TRUE(torch::equal(g.get("bf16"), patterned_tensor(at::kBFloat16, {4})));
  // Writer errors.
  EXPECT_THROW(io::serialize_safetensors({{"a", torch::zeros({1})}, {"a", torch::zeros({1})}}, {}), Error);
  EXPECT_THROW(io::serialize_safetensors({{"__metadata__", torch::zeros({1})}}, {}), Error);
  EXPECT_THROW(io::serialize_safetensors({{"c", torch::zeros({1}, torch::kComplexFloat)}}, {}), Error);
}

TEST(Safetensors, MalformedFilesGiveClearErrors) {
  const std::string t = R"("t": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]})";
  auto good = file_of("{" + t + "}", 8);
  ASSERT_EQ(st_error(good), "<no error>");
  std::vector<uint8_t> huge(16, 0);
  huge[4] = 0x10;  // header length 2^36
  std::vector<uint8_t> past = good;
  past[0] = 200;
  auto trailing = good;
  trailing.push_back(0);
  std::vector<std::pair<std::vector<uint8_t>, std::string>> cases = {
      {{1, 2, 3}, "shorter than the 8-byte header length"},
      {huge, "exceeds the limit"},
      {past, "runs past the end"},
      {file_of("{", 0), "too short"},
      {file_of("{}", 0), "<no error>"},  // an empty file is valid
      {file_of(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                  "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})", 12),
       "contiguous"},  // overlap
      {file_of(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                  "b": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]}})", 12),
       "contiguous"},  // gap
      {file_of(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})", 4), "file length"},  // OOB
      {file_of(R"({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}})", 8), "need 12"},
      {file_of(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}})", 8), "before begin"},
      {trailing, "file length"},
      {file_of(R"({"t": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]})", 8), "not valid JSON"},
      {file_of(R"([1, 2, 3])", 0), "must be a JSON object"},
      {file_of("{" + t + ", " + t + "}", 8), "twice"},
      {file_of(R"({"a": {"dtype": "F31", "shape": [2], "data_offsets": [0, 8]}})", 8), "unsupported dtype"},
      {file_of(R"({"a": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}})", 8), "non-negative"},
      {file_of(R"({"a": {"dtype": "F32", "shape": [2.5], "data_offsets": [0, 8]}})", 8), "non-negative"},
      {file_of(R"({"a": {"dtype": "U8", "shape": [4294967296, 4294967296, 4294967296],
                  "data_offsets": [0, 8]}})", 8), "overflows"},
      {file_of(R"({"__metadata__": {"k": 1}})", 0), "must be a string"},
      {file_of(R"({"__metadata__": [1]})", 0), "object of strings"},
      {file_of(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4, 8]}})", 8), "[begin, end]"},
      {file_of(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0]}})", 8), "[begin, end]"},
      {file_of(R"({"a": {"shape": [2], "data_offsets": [0, 8]}})", 8), "dtype"},
      {file_of(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8], "x": 1}})", 8), "unknown field"},
      {file_of(R"({"a": 5})", 0), "must be an object"},
      {file_of(R"({"a": {"dtype": "F32", "shape": 2, "data_offsets": [0, 8]}})", 8), "shape"},
      {file_of(R"({"a": {"dtype": "F32", "shape": [[[[2]]]], "data_offsets": [0, 8]}})", 8), "nests too deeply"},
      {file_of(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, -8]}})", 8), "non-negative"},
      {file_of("{\"\xff\": 1}", 0), "not valid JSON"},
      {file_of(R"({"a": {"dtype": "BOOL", "shape": [2], "data_offsets": [0, 2]}})", 2), "<no error>"},
  };
  auto badbool = file_of(R"({"a": {"dtype": "BOOL", "shape": [2], "data_offsets": [0, 2]}})", 2);
  badbool.back() = 7;
  cases.push_back({badbool, "BOOL"});
  for (const auto& [bytes, want] : cases) {
    auto msg = st_error(bytes);
    if (want == "<no error>") {
      EXPECT_EQ(msg, want);
      continue;
    }
    EXPECT_NE(msg.find("probe.safetensors"), std::string::npos) << msg;
    EXPECT_NE(msg.find(want), std::string::npos) << "want '" << want << "', got: " << msg;
  }
}

TEST(Safetensors, PythonInteropBothWays) {
  if (!have_python_torch()) GTEST_SKIP() << "/usr/bin/python3 with numpy unavailable";
  TempDir d;
  const std::string script = "/usr/bin/python3 " + source_dir() + "/tests/python/safetensors_interop.py ";
  auto r = run_shell(script + "write " + d.file("py.safetensors"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto f = io::load_safetensors(d.file("py.safetensors"));
  EXPECT_EQ(f.metadata, kMeta);
  for (const auto& c : kStCases) {
    ASSERT_TRUE(f.has(c.name)) << c.name;
    EXPECT_EQ(f.get(c.name).scalar_type(), c.type) << c.name;
    EXPECT_TRUE(torch::equal(f.get(c.name), patterned_tensor(c.type, c.shape))) << c.name;
  }
  io::save_safetensors(d.file("ours.safetensors"), all_cases(), kMeta);
  r = run_shell(script + "check " + d.file("ours.safetensors"));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("OK 12"), std::string::npos) << r.out;
}

}  // namespace ctfgen::test
