// .npy reader/writer: round trips, NumPy interop both ways, strict header parsing, malformed files.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstring>

#include "core/error.h"
#include "core/fs.h"
#include "io/npy.h"
#include "test_util.h"

namespace ctfgen::test {
namespace {

// Must match CASES in tests/python/npy_interop.py.
const std::vector<DtypeCase> kNpyCases = {
    {"f4", at::kFloat, {2, 3}}, {"f8", at::kDouble, {5}}, {"f2", at::kHalf, {3, 2, 2}}, {"i8", at::kLong, {4}},
    {"i4", at::kInt, {2, 2}},   {"i2", at::kShort, {3}},  {"i1", at::kChar, {6}},      {"u1", at::kByte, {2, 3}},
    {"b1", at::kBool, {7}},     {"scalar", at::kFloat, {}}, {"empty", at::kFloat, {0, 3}}};

std::vector<uint8_t> with_header(const std::string& header, size_t data_bytes, int major = 1) {
  std::vector<uint8_t> out = {0x93, 'N', 'U', 'M', 'P', 'Y', static_cast<uint8_t>(major), 0};
  const size_t n = header.size();
  out.push_back(static_cast<uint8_t>(n));
  out.push_back(static_cast<uint8_t>(n >> 8));
  if (major > 1) {
    out.push_back(static_cast<uint8_t>(n >> 16));
    out.push_back(static_cast<uint8_t>(n >> 24));
  }
  out.insert(out.end(), header.begin(), header.end());
  out.resize(out.size() + data_bytes, 0);
  return out;
}

std::string npy_error(const std::vector<uint8_t>& b) {
  try {
    io::parse_npy(b.data(), b.size(), "probe.npy");
  } catch (const Error& e) {
    return e.what();
  }
  return "<no error>";
}

}  // namespace

TEST(Npy, RoundTripEveryDtype) {
  for (const auto& c : kNpyCases) {
    auto v = patterned_tensor(c.type, c.shape);
    auto bytes = io::serialize_npy(v);
    EXPECT_EQ(bytes[6], 1);
    auto back = io::parse_npy(bytes.data(), bytes.size(), c.name);
    EXPECT_EQ(back.scalar_type(), c.type) << c.name;
    EXPECT_EQ(back.sizes(), v.sizes()) << c.name;
    EXPECT_TRUE(torch::equal(back, v)) << c.name;
  }
  TempDir d;
  auto nc = torch::arange(12, torch::kFloat).view({3, 4}).t();  // non-contiguous input
  io::save_npy(d.file("t.npy"), nc);
  EXPECT_TRUE(torch::equal(io::load_npy(d.file("t.npy")), nc));
  EXPECT_THROW(io::serialize_npy(torch::zeros({2}, torch::kBFloat16)), Error);
}

TEST(Npy, HeaderAcceptsPythonLiteralVariants) {
  for (const std::string h :
       {"{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }\n",
        "{\"shape\": (2,), \"descr\": \"<f4\", \"fortran_order\": False}   \n",
        "{'descr':'<f4','fortran_order':False,'shape':(2,)}", "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2)}"}) {
    auto b = with_header(h, 8);
    auto t = io::parse_npy(b.data(), b.size(), "x");
    EXPECT_EQ(t.numel(), 2) << h;
  }
  auto u1 = with_header("{'descr': '<u1', 'fortran_order': False, 'shape': (3,), }", 3);
  EXPECT_EQ(io::parse_npy(u1.data(), u1.size(), "x").scalar_type(), at::kByte);
  auto v2 = with_header("{'descr': '<i8', 'fortran_order': False, 'shape': (), }\n", 8, 2);
  EXPECT_EQ(io::parse_npy(v2.data(), v2.size(), "x").dim(), 0);
  auto v3 = with_header("{'descr': '<i2', 'fortran_order': False, 'shape': (0, 5), }\n", 0, 3);
  EXPECT_EQ(io::parse_npy(v3.data(), v3.size(), "x").size(1), 5);
}

TEST(Npy, MalformedFilesGiveClearErrors) {
  const std::string ok = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }\n";
  auto good = with_header(ok, 8);
  std::vector<std::pair<std::vector<uint8_t>, std::string>> cases = {
      {{}, "not a .npy file"},
      {{'N', 'U', 'M', 'P', 'Y', 0, 0, 0, 0, 0}, "not a .npy file"},
      {with_header(ok, 8, 4), "unsupported .npy version"},
      {std::vector<uint8_t>(good.begin(), good.begin() + 20), "runs past the end"},
      {std::vector<uint8_t>(good.begin(), good.end() - 1), "length mismatch"},
      {with_header(ok, 9), "length mismatch"},
      {with_header("{'descr': '<f4', 'fortran_order': True, 'shape': (2,), }", 8), "fortran_order True"},
      {with_header("{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }", 8), "unsupported .npy dtype"},
      {with_header("{'descr': '<c8', 'fortran_order': False, 'shape': (2,), }", 16), "unsupported .npy dtype"},
      {with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (2), }", 8), "trailing comma"},
      {with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (-2,), }", 8), "non-negative integer"},
      {with_header("{'descr': '<f4', 'fortran_order': False}", 8), "must have the keys"},
      {with_header("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2,)}", 8), "twice"},
      {with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'extra': 1}", 8), "unexpected key"},
      {with_header("{'descr': '<f4', 'fortran_order': 0, 'shape': (2,)}", 8), "True or False"},
      {with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (2,)} x", 8), "after the dict"},
      {with_header("{'descr': '<f4' 'fortran_order': False, 'shape': (2,)}", 8), "expected ',' or '}'"},
      {with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,)}", 8), "too large"},
      {with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296, 4)}", 8),
       "overflows"},
      {with_header("{'descr': '<f\\x34', 'fortran_order': False, 'shape': (2,)}", 8), "unsupported character"},
      {with_header("{'descr': '|b1', 'fortran_order': False, 'shape': (2,)}", 2), "<no error>"},
      {with_header("[1, 2]", 0), "expected '{'"},
      {with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (2,)", 8), "expected ',' or '}'"},
  };
  auto badbool = with_header("{'descr': '|b1', 'fortran_order': False, 'shape': (2,)}", 2);
  badbool.back() = 2;
  cases.push_back({badbool, "bool array holds the byte 2"});
  for (const auto& [bytes, want] : cases) {
    auto msg = npy_error(bytes);
    if (want == "<no error>") {
      EXPECT_EQ(msg, want);
      continue;
    }
    EXPECT_NE(msg.find("probe.npy"), std::string::npos) << msg;
    EXPECT_NE(msg.find(want), std::string::npos) << "want '" << want << "', got: " << msg;
  }
  std::vector<uint8_t> huge = {0x93, 'N', 'U', 'M', 'P', 'Y', 2, 0, 0xFF, 0xFF, 0xFF, 0xFF};
  EXPECT_NE(npy_error(huge).find("exceeds the limit"), std::string::npos);
}

TEST(Npy, NumpyInteropBothWays) {
  if (!have_python_torch()) GTEST_SKIP() << "/usr/bin/python3 with numpy unavailable";
  TempDir py, ours;
  const std::string script = "/usr/bin/python3 " + source_dir() + "/tests/python/npy_interop.py ";
  auto r = run_shell(script + "write " + py.path());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const auto& c : kNpyCases) {
    auto t = io::load_npy(py.file(c.name + ".npy"));
    EXPECT_EQ(t.scalar_type(), c.type) << c.name;
    EXPECT_TRUE(torch::equal(t, patterned_tensor(c.type, c.shape))) << c.name;
    io::save_npy(ours.file(c.name + ".npy"), patterned_tensor(c.type, c.shape));
  }
  for (const std::string v : {"f4_v2", "f4_v3"})
    EXPECT_TRUE(torch::equal(io::load_npy(py.file(v + ".npy")), patterned_tensor(at::kFloat, {2, 3}))) << v;
  EXPECT_THROW(io::load_npy(py.file("fortran.npy")), Error);
  EXPECT_THROW(io::load_npy(py.file("bigendian.npy")), Error);
  r = run_shell(script + "check " + ours.path());
  EXPECT_EQ(r.exit_code, 0) << r.err << r.out;
  EXPECT_NE(r.out.find("OK 11"), std::string::npos) << r.out;
}

}  // namespace ctfgen::test
