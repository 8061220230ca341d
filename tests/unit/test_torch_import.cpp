// The restricted PyTorch-checkpoint reader on hand-built archives and pickles: what it reads,
// what it refuses (each a ctfgen::Error with a clear message), and that nothing named in a
// pickle is ever executed. No Python needed.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstring>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/pickle_reader.h"
#include "io/torch_import.h"
#include "io/zip_reader.h"
#include "test_util.h"

namespace ctfgen::test {
namespace {

using Bytes = std::vector<uint8_t>;

uint32_t crc32_of(const Bytes& b) {
  uint32_t c = 0xFFFFFFFFu;
  for (uint8_t x : b) {
    c ^= x;
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
  }
  return ~c;
}
void put16(Bytes& b, uint32_t v) {
  b.push_back(v & 0xFF);
  b.push_back((v >> 8) & 0xFF);
}
void put32(Bytes& b, uint32_t v) {
  put16(b, v & 0xFFFF);
  put16(b, v >> 16);
}

// A minimal ZIP writer (stored entries) written to the APPNOTE, as torch.save lays them out.
Bytes make_zip(const std::vector<std::pair<std::string, Bytes>>& entries) {
  Bytes out, cd;
  for (const auto& [name, data] : entries) {
    uint32_t off = static_cast<uint32_t>(out.size());
    uint32_t crc = crc32_of(data);
    put32(out, 0x04034b50);
    put16(out, 20), put16(out, 0), put16(out, 0), put16(out, 0), put16(out, 0);
    put32(out, crc), put32(out, data.size()), put32(out, data.size());
    put16(out, name.size()), put16(out, 0);
    out.insert(out.end(), name.begin(), name.end());
    out.insert(out.end(), data.begin(), data.end());
    put32(cd, 0x02014b50);
    put16(cd, 20), put16(cd, 20), put16(cd, 0), put16(cd, 0), put16(cd, 0), put16(cd, 0);
    put32(cd, crc), put32(cd, data.size()), put32(cd, data.size());
    put16(cd, name.size()), put16(cd, 0), put16(cd, 0), put16(cd, 0), put16(cd, 0);
    put32(cd, 0), put32(cd, off);
    cd.insert(cd.end(), name.begin(), name.end());
  }
  uint32_t cd_off = static_cast<uint32_t>(out.size());
  out.insert(out.end(), cd.begin(), cd.end());
  put32(out, 0x06054b50);
  put16(out, 0), put16(out, 0), put16(out, entries.size()), put16(out, entries.size());
  put32(out, cd.size()), put32(out, cd_off), put16(out, 0);
  return out;
}

// Emits pickle opcodes (protocol 2, as torch.save writes them).
struct Pickle {
  Bytes b;
  Pickle() {
    b.push_back(0x80);
    b.push_back(2);
  }
  Pickle& op(uint8_t o) {
    b.push_back(o);
    return *this;
  }
  Pickle& str(const std::string& s) {
    op('X');
    put32(b, s.size());
    b.insert(b.end(), s.begin(), s.end());
    return *this;
  }
  Pickle& global(const std::string& module, const std::string& name) {
    op('c');
    b.insert(b.end(), module.begin(), module.end());
    b.push_back('\n');
    b.insert(b.end(), name.begin(), name.end());
    b.push_back('\n');
    return *this;
  }
  Pickle& i(int32_t v) {
    op('J');
    put32(b, static_cast<uint32_t>(v));
    return *this;
  }
  Pickle& f(double v) {  // BINFLOAT: big-endian IEEE double
    uint64_t raw;
    std::memcpy(&raw, &v, 8);
    op('G');
    for (int k = 7; k >= 0; --k) b.push_back(static_cast<uint8_t>(raw >> (8 * k)));
    return *this;
  }
  // argparse.Namespace() as protocol 2 writes it: GLOBAL, EMPTY_TUPLE, NEWOBJ; BUILD follows.
  Pickle& namespace_obj() { return global("argparse", "Namespace").op(')').op(0x81); }
  Pickle& ints(const std::vector<int32_t>& v) {
    op('(');
    for (int32_t x : v) i(x);
    return op('t');
  }
  // _rebuild_tensor_v2(('storage', torch.<type>, key, 'cpu', numel), offset, size, stride, False,
  //                    OrderedDict())
  Pickle& tensor(const std::string& type, const std::string& key, int32_t numel, int32_t offset,
                 const std::vector<int32_t>& size, const std::vector<int32_t>& stride) {
    global("torch._utils", "_rebuild_tensor_v2");
    op('(');
    op('(').str("storage").global("torch", type).str(key).str("cpu").i(numel).op('t').op('Q');
    i(offset).ints(size).ints(stride).op(0x89);
    global("collections", "OrderedDict").op(')').op('R');
    return op('t').op('R');
  }
  Bytes done() {
    Bytes r = b;
    r.push_back('.');
    return r;
  }
};

Bytes floats_le(const std::vector<float>& v) {
  Bytes b(v.size() * 4);
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

io::TorchStateDict read_mem(const Bytes& zip, const io::TorchReadOptions& opt = {}) {
  return io::read_torch_state_dict_from_memory(zip.data(), zip.size(), "test.pt", opt);
}


// {"model": OrderedDict(w=tensor(storage 0, [2, 3]), b=tensor(storage 0, offset 4, [2])), "steps": 5}
Bytes good_pickle() {
  Pickle p;
  p.op('}').op('(').str("model");
  p.global("collections", "OrderedDict").op(')').op('R').op('(');
  p.str("w").tensor("FloatStorage", "0", 6, 0, {2, 3}, {3, 1});
  p.str("b").tensor("FloatStorage", "0", 6, 4, {2}, {1});
  p.str("t").tensor("FloatStorage", "0", 6, 0, {3, 2}, {1, 3});  // a transposed view
  p.op('u');
  p.str("steps").i(5);
  p.op('u');
  return p.done();
}

TEST(TorchImportReader, ReadsTensorsViewsAndTheModelEntry) {
  Bytes zip = make_zip({{"ckpt/data.pkl", good_pickle()},
                        {"ckpt/data/0", floats_le({0, 1, 2, 3, 4, 5})},
                        {"ckpt/version", {'3', '\n'}}});
  auto sd = read_mem(zip);
  EXPECT_EQ(sd.entry, "model");
  EXPECT_EQ(sd.archive_folder, "ckpt");
  ASSERT_EQ(sd.tensors.size(), 3u);
  EXPECT_EQ(sd.tensors[0].first, "w");
  EXPECT_TRUE(torch::equal(sd.tensors[0].second, torch::arange(6, torch::kFloat).view({2, 3})));
  EXPECT_TRUE(torch::equal(sd.tensors[1].second, torch::tensor({4.f, 5.f})));
  EXPECT_TRUE(torch::equal(sd.tensors[2].second,
                           torch::arange(6, torch::kFloat).view({2, 3}).t().contiguous()));
  EXPECT_TRUE(sd.tensors[2].second.is_contiguous());
  EXPECT_EQ(sd.top_level_keys, (std::vector<std::string>{"model", "steps"}));
}

TEST(TorchImportReader, MaliciousGlobalIsNeverExecuted) {
  TempDir dir;
  const std::string marker = dir.file("pwned");
  // "evil": os.system("touch <marker>"), "evil2": builtins.eval(...) via NEWOBJ and BUILD.
  Pickle p;
  p.op('}').op('(').str("model").op('}').op('(');
  p.str("w").tensor("FloatStorage", "0", 6, 0, {6}, {1});
  p.op('u');
  p.str("evil").global("os", "system").op('(').str("touch " + marker).op('t').op('R');
  p.str("evil2").global("posix", "system").str("touch " + marker).op(0x85).op('R');
  p.str("evil3").global("builtins", "eval").op(')').op(0x81).op('}').op('b');
  p.op('u');
  Bytes zip = make_zip({{"archive/data.pkl", p.done()},
                        {"archive/data/0", floats_le({0, 1, 2, 3, 4, 5})}});
  auto sd = read_mem(zip);
  ASSERT_EQ(sd.tensors.size(), 1u);
  EXPECT_FALSE(std::filesystem::exists(marker));
  EXPECT_NE(std::find(sd.opaque_objects.begin(), sd.opaque_objects.end(), "os.system"),
            sd.opaque_objects.end());
  EXPECT_NE(std::find(sd.opaque_objects.begin(), sd.opaque_objects.end(), "builtins.eval"),
            sd.opaque_objects.end());
}

TEST(TorchImportReader, MaliciousObjectAsTheModelEntryIsRejected) {
  Pickle p;
  p.op('}').str("model").global("os", "system").op('(').str("true").op('t').op('R').op('s');
  Bytes zip = make_zip({{"archive/data.pkl", p.done()}});
  std::string err = error_of([&] { read_mem(zip); });
  EXPECT_NE(err.find("entry 'model' is a object os.system"), std::string::npos) << err;
}

TEST(TorchImportReader, StorageOffsetPastTheEndIsAnError) {
  Pickle p;
  p.op('}').str("w").tensor("FloatStorage", "0", 6, 5, {2}, {1}).op('s');
  Bytes zip = make_zip({{"a/data.pkl", p.done()}, {"a/data/0", floats_le({0, 1, 2, 3, 4, 5})}});
  std::string err = error_of([&] { read_mem(zip); });
  EXPECT_NE(err.find("past the end of storage '0' (6 elements)"), std::string::npos) << err;
  // A stride that reaches past the end, and a negative stride.
  Pickle q;
  q.op('}').str("w").tensor("FloatStorage", "0", 6, 0, {2, 3}, {4, 1}).op('s');
  err = error_of([&] {
    read_mem(make_zip({{"a/data.pkl", q.done()}, {"a/data/0", floats_le({0, 1, 2, 3, 4, 5})}}));
  });
  EXPECT_NE(err.find("past the end of storage"), std::string::npos) << err;
  Pickle r;
  r.op('}').str("w").tensor("FloatStorage", "0", 6, 5, {2}, {-1}).op('s');
  err = error_of([&] {
    read_mem(make_zip({{"a/data.pkl", r.done()}, {"a/data/0", floats_le({0, 1, 2, 3, 4, 5})}}));
  });
  EXPECT_NE(err.find("negative tensor stride"), std::string::npos) << err;
}

TEST(TorchImportReader, WrongNumelOrMissingStorageIsAnError) {
  Pickle p;
  p.op('}').str("w").tensor("FloatStorage", "0", 8, 0, {2}, {1}).op('s');
  Bytes pk = p.done();
  std::string err = error_of(
      [&] { read_mem(make_zip({{"a/data.pkl", pk}, {"a/data/0", floats_le({0, 1, 2, 3, 4, 5})}})); });
  EXPECT_NE(err.find("declares 8 Float elements (32 bytes)"), std::string::npos) << err;
  EXPECT_NE(err.find("holds 24 bytes"), std::string::npos) << err;
  err = error_of([&] { read_mem(make_zip({{"a/data.pkl", pk}})); });
  EXPECT_NE(err.find("has no entry 'a/data/0'"), std::string::npos) << err;
}

TEST(TorchImportReader, HalfAndBFloat16StoragesAreRead) {
  auto h = torch::tensor({1.5f, -2.25f, 3.f}).to(torch::kHalf);
  auto bf = torch::tensor({0.5f, 7.f}).to(torch::kBFloat16);
  Bytes hb(6), bb(4);
  std::memcpy(hb.data(), h.data_ptr(), 6);
  std::memcpy(bb.data(), bf.data_ptr(), 4);
  Pickle p;
  p.op('}').op('(');
  p.str("h").tensor("HalfStorage", "0", 3, 0, {3}, {1});
  p.str("b").tensor("BFloat16Storage", "1", 2, 0, {2}, {1});
  p.op('u');
  auto sd = read_mem(make_zip({{"x/data.pkl", p.done()}, {"x/data/0", hb}, {"x/data/1", bb}}));
  EXPECT_EQ(sd.entry, "");
  ASSERT_EQ(sd.tensors.size(), 2u);
  EXPECT_EQ(sd.tensors[0].second.scalar_type(), torch::kHalf);
  EXPECT_TRUE(torch::equal(sd.tensors[0].second, h));
  EXPECT_EQ(sd.tensors[1].second.scalar_type(), torch::kBFloat16);
  EXPECT_TRUE(torch::equal(sd.tensors[1].second, bf));
}

TEST(TorchImportReader, TruncatedArchivesFailCleanly) {
  Bytes zip = make_zip({{"c/data.pkl", good_pickle()}, {"c/data/0", floats_le({0, 1, 2, 3, 4, 5})}});
  ASSERT_NO_THROW(read_mem(zip));
  for (size_t len = 0; len < zip.size(); ++len) {
    Bytes cut(zip.begin(), zip.begin() + static_cast<std::ptrdiff_t>(len));
    EXPECT_THROW(read_mem(cut), Error) << "length " << len;
  }
  std::string err = error_of([&] { read_mem(Bytes(zip.begin(), zip.end() - 30)); });
  EXPECT_NE(err.find("truncated"), std::string::npos) << err;
}

TEST(TorchImportReader, CorruptBytesNeverCrash) {
  Bytes zip = make_zip({{"c/data.pkl", good_pickle()}, {"c/data/0", floats_le({0, 1, 2, 3, 4, 5})}});
  int errors = 0;
  for (size_t pos = 0; pos < zip.size(); ++pos) {
    for (uint8_t x : {0x01, 0x80, 0xFF}) {
      Bytes bad = zip;
      bad[pos] ^= x;
      try {
        read_mem(bad);
      } catch (const Error&) {
        ++errors;
      }
    }
  }
  // The CRC covers every data byte, so most flips are caught; none may crash.
  EXPECT_GT(errors, static_cast<int>(zip.size()));
}

TEST(TorchImportReader, LegacyAndOtherFormatsAreRefusedWithAReason) {
  Bytes legacy = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, '.'};
  EXPECT_NE(error_of([&] { read_mem(legacy); }).find("legacy (non-zip)"), std::string::npos);
  Bytes junk = {'h', 'e', 'l', 'l', 'o'};
  EXPECT_NE(error_of([&] { read_mem(junk); }).find("not a PyTorch zip checkpoint"), std::string::npos);
  Bytes ts = make_zip({{"m/data.pkl", good_pickle()}, {"m/constants.pkl", Pickle().op(')').done()}});
  EXPECT_NE(error_of([&] { read_mem(ts); }).find("TorchScript"), std::string::npos);
  Bytes none = make_zip({{"m/other", {1, 2}}});
  EXPECT_NE(error_of([&] { read_mem(none); }).find("without a data.pkl"), std::string::npos);
}

TEST(TorchImportPickle, RefusesMutatingNonDictsAndUnsupportedOpcodes) {
  auto parse = [](const Bytes& b, const io::pickle::Limits& l = {}) {
    return io::pickle::parse(b.data(), b.size(), "p", l);
  };
  // SETITEMS on a list (CVE-2026-24747's pattern) and APPEND on a tuple.
  Bytes setitems = Pickle().op(']').op('(').str("k").str("v").op('u').done();
  EXPECT_NE(error_of([&] { parse(setitems); }).find("SETITEM(S) applied to a list"), std::string::npos);
  Bytes append = Pickle().op(')').str("v").op('a').done();
  EXPECT_NE(error_of([&] { parse(append); }).find("APPEND(S) applied to a tuple"), std::string::npos);
  Bytes inst = Pickle().op('(').op('i').done();
  EXPECT_NE(error_of([&] { parse(inst); }).find("INST"), std::string::npos);
  Bytes unknown = Pickle().op(0xF0).done();
  EXPECT_NE(error_of([&] { parse(unknown); }).find("unknown opcode"), std::string::npos);
  Bytes no_stop = Pickle().op(')').b;
  EXPECT_NE(error_of([&] { parse(no_stop); }).find("without a STOP"), std::string::npos);
  Bytes underflow = Pickle().op('R').done();
  EXPECT_NE(error_of([&] { parse(underflow); }).find("stack underflow"), std::string::npos);
  Bytes bad_get = Pickle().op('h').op(7).done();
  EXPECT_NE(error_of([&] { parse(bad_get); }).find("memo key 7"), std::string::npos);
  Bytes long_str = Pickle().op('X').op(0xFF).op(0xFF).op(0xFF).op(0x7F).done();
  EXPECT_NE(error_of([&] { parse(long_str); }).find("truncated pickle"), std::string::npos);
  Bytes storage = Pickle().tensor("ComplexFloatStorage", "0", 1, 0, {1}, {1}).done();
  EXPECT_NE(error_of([&] { parse(storage); }).find("unsupported storage type torch.ComplexFloatStorage"),
            std::string::npos);
}

TEST(TorchImportPickle, LimitsOnStackMemoNestingAndMarks) {
  auto parse = [](const Bytes& b, const io::pickle::Limits& l) {
    return io::pickle::parse(b.data(), b.size(), "p", l);
  };
  io::pickle::Limits small;
  small.max_stack = 10;
  small.max_memo = 3;
  small.max_depth = 20;
  small.max_marks = 4;
  Pickle deep_stack;
  for (int k = 0; k < 11; ++k) deep_stack.op('N');
  EXPECT_NE(error_of([&] { parse(deep_stack.done(), small); }).find("stack exceeds 10"), std::string::npos);
  Pickle memo;
  memo.op('N');
  for (int k = 0; k < 4; ++k) memo.op('q').op(static_cast<uint8_t>(k));
  EXPECT_NE(error_of([&] { parse(memo.done(), small); }).find("memo exceeds 3"), std::string::npos);
  Pickle nest;
  nest.op(']');
  for (int k = 0; k < 25; ++k) nest.op(0x85);  // ((([],),),) ...
  EXPECT_NE(error_of([&] { parse(nest.done(), small); }).find("nested deeper than 20"), std::string::npos);
  Pickle marks;
  for (int k = 0; k < 5; ++k) marks.op('(');
  EXPECT_NE(error_of([&] { parse(marks.done(), small); }).find("open MARKs"), std::string::npos);
  // A list that contains itself parses (no recursion, no leak).
  Bytes cyc = Pickle().op(']').op('q').op(0).op('h').op(0).op('a').done();
  auto doc = io::pickle::parse(cyc.data(), cyc.size(), "p");
  EXPECT_EQ(doc.at(doc.root).kind, io::pickle::Kind::List);
  EXPECT_EQ(doc.at(doc.root).items.at(0), doc.root);
}

TEST(TorchImportPickle, Protocol4FramingAndShortOpcodes) {
  Bytes b = {0x80, 4, 0x95, 14, 0, 0, 0, 0, 0, 0, 0, '}', 0x94, 0x8c, 1, 'k', 0x94, 0x8a, 2, 0x00, 0x80,
             's', '.'};
  b[3] = static_cast<uint8_t>(b.size() - 11);
  auto doc = io::pickle::parse(b.data(), b.size(), "p4");
  const auto* v = doc.dict_get(doc.at(doc.root), "k");
  ASSERT_TRUE(v);
  EXPECT_EQ(v->kind, io::pickle::Kind::Int);
  EXPECT_EQ(v->i, -32768);
}

// ---- argparse.Namespace state (LlamaGen's saved training args) ----

TEST(TorchImportPickle, NamespaceStateIsKeptAsDataAndMerged) {
  // Namespace(image_size=384, gpt_model='GPT-B'), then a second BUILD as Python would apply it
  // (__dict__.update): image_size=256, lr=0.5.
  Pickle p;
  p.namespace_obj();
  p.op('}').op('(').str("image_size").i(384).str("gpt_model").str("GPT-B").op('u').op('b');
  p.op('}').op('(').str("image_size").i(256).str("lr").f(0.5).op('u').op('b');
  Bytes b = p.done();
  auto doc = io::pickle::parse(b.data(), b.size(), "p");
  const auto& ns = doc.at(doc.root);
  EXPECT_EQ(ns.kind, io::pickle::Kind::Object);
  EXPECT_EQ(ns.s, "argparse.Namespace");
  EXPECT_EQ(ns.items.size(), 2u);  // the two state dicts, as data
  auto fields = doc.namespace_fields(ns);
  ASSERT_EQ(fields.size(), 3u);
  EXPECT_EQ(fields[0].first, "image_size");
  EXPECT_EQ(doc.at(fields[0].second).i, 256);  // the later BUILD wins, first position kept
  EXPECT_EQ(fields[1].first, "gpt_model");
  EXPECT_EQ(doc.at(fields[1].second).s, "GPT-B");
  EXPECT_EQ(fields[2].first, "lr");
  EXPECT_EQ(doc.at(fields[2].second).f, 0.5);
  // The same through REDUCE (argparse.Namespace called with no arguments).
  Pickle r;
  r.global("argparse", "Namespace").op(')').op('R').op('}').str("k").i(1).op('s').op('b');
  Bytes rb = r.done();
  auto rdoc = io::pickle::parse(rb.data(), rb.size(), "p");
  EXPECT_EQ(rdoc.namespace_fields(rdoc.at(rdoc.root)).size(), 1u);
}

TEST(TorchImportPickle, OtherObjectsAndNonDictStatesAreDropped) {
  // Another class's dict state is dropped, as before.
  Pickle other;
  other.global("mymodule", "Config").op(')').op(0x81).op('}').str("k").i(1).op('s').op('b');
  Bytes ob = other.done();
  auto doc = io::pickle::parse(ob.data(), ob.size(), "p");
  EXPECT_EQ(doc.at(doc.root).kind, io::pickle::Kind::Object);
  EXPECT_TRUE(doc.at(doc.root).items.empty());
  EXPECT_TRUE(doc.namespace_fields(doc.at(doc.root)).empty());
  // A Namespace whose state is not a dict: a (state, slotstate) tuple, a list, an int.
  Pickle ns;
  ns.namespace_obj();
  ns.op('}').str("k").i(1).op('s').op('N').op(0x86).op('b');  // ({'k': 1}, None)
  ns.op(']').op('b').i(7).op('b');
  Bytes nb = ns.done();
  doc = io::pickle::parse(nb.data(), nb.size(), "p");
  EXPECT_EQ(doc.at(doc.root).s, "argparse.Namespace");
  EXPECT_TRUE(doc.at(doc.root).items.empty());
  EXPECT_TRUE(doc.namespace_fields(doc.at(doc.root)).empty());
  // A Global (not an instance) keeps nothing either.
  Bytes gb = Pickle().global("argparse", "Namespace").op('}').str("k").i(1).op('s').op('b').done();
  doc = io::pickle::parse(gb.data(), gb.size(), "p");
  EXPECT_EQ(doc.at(doc.root).kind, io::pickle::Kind::Global);
  EXPECT_TRUE(doc.namespace_fields(doc.at(doc.root)).empty());
}

TEST(TorchImportPickle, NamespaceStateCountsTowardsTheLimits) {
  io::pickle::Limits small;
  small.max_depth = 3;
  // Namespace(a=(([],),)): the list is depth 0, the tuples 1 and 2, the dict 3, the object 4.
  Pickle p;
  p.namespace_obj().op('}').str("a").op(']').op(0x85).op(0x85).op('s').op('b');
  Bytes b = p.done();
  EXPECT_NE(error_of([&] { io::pickle::parse(b.data(), b.size(), "p", small); })
                .find("nested deeper than 3"),
            std::string::npos);
  small.max_depth = 4;
  EXPECT_NO_THROW(io::pickle::parse(b.data(), b.size(), "p", small));
  // One dict BUILT into the same Namespace over and over: refused after 8 (Python writes one).
  Pickle many;
  many.namespace_obj().op('}').op('q').op(0).op('b');
  for (int k = 0; k < 8; ++k) many.op('h').op(0).op('b');
  Bytes mb = many.done();
  EXPECT_NE(error_of([&] { io::pickle::parse(mb.data(), mb.size(), "p"); })
                .find("more than 8 BUILD states for one argparse.Namespace"),
            std::string::npos);
}

// {"model": {"w": tensor}, "args": <args>}
Bytes zip_with_args(const std::function<void(Pickle&)>& args) {
  Pickle p;
  p.op('}').op('(').str("model").op('}').str("w").tensor("FloatStorage", "0", 2, 0, {2}, {1}).op('s');
  p.str("args");
  args(p);
  p.op('u');
  return make_zip({{"a/data.pkl", p.done()}, {"a/data/0", floats_le({1, 2})}});
}

TEST(TorchImportReader, NamespaceArgsBecomeJsonOfPlainValues) {
  auto sd = read_mem(zip_with_args([](Pickle& p) {
    p.namespace_obj().op('}').op('(');
    p.str("image_size").i(384).str("gpt_model").str("GPT-B").str("lr").f(1e-4);
    p.str("ema").op(0x89).str("vq_ckpt").op('N');
    p.str("betas").f(0.9).f(0.95).op(0x86);           // a tuple of floats
    p.str("nested").namespace_obj();                  // an object: left out
    p.str("grid").op(']').op('(').op(']').op('e');    // a list holding a list: left out
    p.str("blob").op('C').op(1).op('x');              // bytes: left out
    p.str("steps").i(1).str("steps").i(2);            // duplicate key: the last one
    p.op('u').op('b');
  }));
  ASSERT_TRUE(sd.args.is_object());
  EXPECT_EQ(sd.args["image_size"], 384);
  EXPECT_EQ(sd.args["gpt_model"], "GPT-B");
  EXPECT_EQ(sd.args["lr"], 1e-4);
  EXPECT_EQ(sd.args["ema"], false);
  EXPECT_TRUE(sd.args["vq_ckpt"].is_null());
  EXPECT_EQ(sd.args["betas"], nlohmann::json::parse("[0.9, 0.95]"));
  EXPECT_EQ(sd.args["steps"], 2);
  EXPECT_FALSE(sd.args.contains("nested"));
  EXPECT_FALSE(sd.args.contains("grid"));
  EXPECT_FALSE(sd.args.contains("blob"));
  std::string notes;
  for (const auto& n : sd.args_notes) notes += n + "\n";
  EXPECT_NE(notes.find("nested (object argparse.Namespace)"), std::string::npos) << notes;
  EXPECT_NE(notes.find("grid (list holding a list of 0 items)"), std::string::npos) << notes;
  EXPECT_NE(notes.find("blob (bytes)"), std::string::npos) << notes;
  EXPECT_EQ(sd.tensors.size(), 1u);

  // args that are not a Namespace are not read; a Namespace without state gives {}.
  sd = read_mem(zip_with_args([](Pickle& p) { p.op('}').str("image_size").i(384).op('s'); }));
  EXPECT_TRUE(sd.args.is_null());
  ASSERT_EQ(sd.args_notes.size(), 1u);
  EXPECT_NE(sd.args_notes[0].find("top-level 'args' is a dict, not an argparse.Namespace"),
            std::string::npos);
  sd = read_mem(zip_with_args([](Pickle& p) { p.namespace_obj(); }));
  EXPECT_TRUE(sd.args.is_object());
  EXPECT_TRUE(sd.args.empty());
  // Text that is not UTF-8 is left out (it could not be written to the component's JSON meta).
  sd = read_mem(zip_with_args([](Pickle& p) {
    p.namespace_obj().op('}').str("name").str("\xff\xfe").op('s').op('b');
  }));
  EXPECT_TRUE(sd.args.empty());
  ASSERT_EQ(sd.args_notes.size(), 1u);
  EXPECT_NE(sd.args_notes[0].find("not valid UTF-8"), std::string::npos);
}

// ---- detection on in-memory state dicts ----

// zero_stride: expanded views of one element, so full-size shapes cost no memory.
io::NamedTensors tiny_gpt(int64_t D = 128, int64_t L = 2, int64_t V = 64, int64_t classes = 10,
                          bool zero_stride = false) {
  const int64_t H = ((2 * 4 * D / 3) + 255) / 256 * 256;
  io::NamedTensors t;
  auto zeros = [zero_stride](std::vector<int64_t> shape) {
    return zero_stride ? torch::zeros({1}).expand(shape) : torch::zeros(shape);
  };
  t.emplace_back("cls_embedding.embedding_table.weight", zeros({classes + 1, D}));
  t.emplace_back("tok_embeddings.weight", zeros({V, D}));
  for (int64_t i = 0; i < L; ++i) {
    auto p = "layers." + std::to_string(i) + ".";
    t.emplace_back(p + "attention.wqkv.weight", zeros({3 * D, D}));
    t.emplace_back(p + "attention.wo.weight", zeros({D, D}));
    t.emplace_back(p + "feed_forward.w1.weight", zeros({H, D}));
    t.emplace_back(p + "feed_forward.w3.weight", zeros({H, D}));
    t.emplace_back(p + "feed_forward.w2.weight", zeros({D, H}));
    t.emplace_back(p + "attention_norm.weight", zeros({D}));
    t.emplace_back(p + "ffn_norm.weight", zeros({D}));
  }
  t.emplace_back("norm.weight", zeros({D}));
  t.emplace_back("output.weight", zeros({V, D}));
  return t;
}

TEST(TorchImportDetect, GPTSizesVocabAndBlockSizeSources) {
  auto d = io::detect_llamagen(tiny_gpt(), "dir/c2i_tiny.pt");
  EXPECT_EQ(d.kind, "gpt");
  EXPECT_EQ(d.preset, "custom");
  EXPECT_EQ(d.config["dim"], 128);
  EXPECT_EQ(d.config["n_layer"], 2);
  EXPECT_EQ(d.config["n_head"], 2);
  EXPECT_EQ(d.config["vocab_size"], 64);
  EXPECT_EQ(d.config["num_classes"], 10);
  EXPECT_EQ(d.config["block_size"], 256);
  std::string notes;
  for (const auto& n : d.notes) notes += n + "\n";
  EXPECT_NE(notes.find("default"), std::string::npos) << notes;

  d = io::detect_llamagen(tiny_gpt(), "/x/c2i_B_384.pt");
  EXPECT_EQ(d.config["block_size"], 576);
  notes.clear();
  for (const auto& n : d.notes) notes += n + "\n";
  EXPECT_NE(notes.find("24x24 tokens for 384px images (inferred from the file name"), std::string::npos)
      << notes;
  io::LlamaGenImportOptions opt;
  opt.image_size = 512;
  opt.n_head = 4;
  d = io::detect_llamagen(tiny_gpt(), "/x/c2i_B_384.pt", opt);
  EXPECT_EQ(d.config["block_size"], 1024);
  EXPECT_EQ(d.config["n_head"], 4);
}

TEST(TorchImportDetect, GPTPresetsFromDimAndLayers) {
  // GPT-B's shapes without allocating 111M floats: zero-stride expanded tensors.
  auto t = tiny_gpt(768, 12, 16384, 1000, /*zero_stride=*/true);
  auto d = io::detect_llamagen(t, "c2i_B_256.pt");
  EXPECT_EQ(d.preset, "GPT-B");
  EXPECT_EQ(d.config["n_head"], 12);
  EXPECT_EQ(d.config["vocab_size"], 16384);
  EXPECT_EQ(d.config["num_classes"], 1000);
}

TEST(TorchImportDetect, GPTErrorsNameTheTensor) {
  auto t = tiny_gpt();
  t.erase(t.begin() + 3);  // layers.0.attention.wo.weight
  EXPECT_NE(error_of([&] { io::detect_llamagen(t, "f.pt"); }).find("missing tensor 'layers.0.attention.wo.weight'"),
            std::string::npos);
  t = tiny_gpt();
  t.emplace_back("layers.0.attention.extra.weight", torch::zeros({1}));
  EXPECT_NE(error_of([&] { io::detect_llamagen(t, "f.pt"); }).find("unexpected tensors: layers.0.attention.extra.weight"),
            std::string::npos);
  t = tiny_gpt();
  t[2].second = torch::zeros({3 * 128, 64});
  EXPECT_NE(error_of([&] { io::detect_llamagen(t, "f.pt"); }).find("'layers.0.attention.wqkv.weight' has shape [384, 64]"),
            std::string::npos);
  t = tiny_gpt();
  t.emplace_back("freqs_cis", torch::zeros({257, 32, 2}));
  t.emplace_back("layers.1.attention.kv_cache.k_cache", torch::zeros({1}));
  EXPECT_NO_THROW(io::detect_llamagen(t, "f.pt"));
  t.emplace_back("cls_embedding.cap_proj.fc1.weight", torch::zeros({128, 2048}));
  EXPECT_NE(error_of([&] { io::detect_llamagen(t, "f.pt"); }).find("text-to-image"), std::string::npos);
  io::LlamaGenImportOptions opt;
  opt.kind = "vq";
  EXPECT_NE(error_of([&] { io::detect_llamagen(tiny_gpt(), "f.pt", opt); }).find("expected a LlamaGen VQ tokenizer but found a GPT"),
            std::string::npos);
  EXPECT_NE(error_of([&] { io::detect_llamagen({{"foo", torch::zeros({1})}}, "f.pt"); }).find("neither"),
            std::string::npos);
}

TEST(TorchImportDetect, OptionsAreRangeChecked) {
  io::LlamaGenImportOptions opt;
  opt.image_size = 100;
  opt.token_downsample = 16;  // 100 is not a multiple of it
  EXPECT_THROW(opt.validate(), UsageError);
  opt.token_downsample = 0;  // inferred: checked once known
  EXPECT_NO_THROW(opt.validate());
  EXPECT_THROW(io::detect_llamagen(tiny_gpt(), "f.pt", opt), UsageError);
  opt = {};
  opt.token_downsample = -1;
  EXPECT_THROW(opt.validate(), UsageError);
  opt = {};
  opt.kind = "aux";
  EXPECT_THROW(opt.validate(), UsageError);
}

std::string notes_of(const io::LlamaGenDetection& d) {
  std::string s;
  for (const auto& n : d.notes) s += n + "\n";
  return s;
}

// Block size: explicit option > args > file name > 256; the name and args must not disagree.
TEST(TorchImportDetect, GPTBlockSizeFromArgsFileNameAndOptions) {
  using nlohmann::json;
  auto d = io::detect_llamagen(tiny_gpt(), "dir/model.pt", {}, json{{"image_size", 384}});
  EXPECT_EQ(d.config["block_size"], 576);
  EXPECT_EQ(d.sources["image_size"], "args");
  EXPECT_EQ(d.sources["token_downsample"], "default");
  EXPECT_EQ(d.sources["n_head"], "default");
  EXPECT_NE(notes_of(d).find("24x24 tokens for 384px images (from args.image_size) at 16 pixels "
                             "per token (default)"),
            std::string::npos)
      << notes_of(d);

  // The name agrees with args: fine, and said so.
  d = io::detect_llamagen(tiny_gpt(), "dir/c2i_B_384.pt", {}, json{{"image_size", 384}});
  EXPECT_EQ(d.config["block_size"], 576);
  EXPECT_NE(notes_of(d).find("the file name agrees"), std::string::npos) << notes_of(d);

  // The name says 384, args 256: an error naming both ...
  const json args256{{"image_size", 256}};
  std::string err = error_of([&] { io::detect_llamagen(tiny_gpt(), "dir/c2i_B_384.pt", {}, args256); });
  EXPECT_NE(err.find("the file name 'c2i_B_384.pt' says 384px images but args.image_size is 256"),
            std::string::npos)
      << err;
  EXPECT_NE(err.find("--image-size"), std::string::npos) << err;
  // ... unless --image-size decides, which the notes say.
  io::LlamaGenImportOptions opt;
  opt.image_size = 384;
  d = io::detect_llamagen(tiny_gpt(), "dir/c2i_B_384.pt", opt, args256);
  EXPECT_EQ(d.config["block_size"], 576);
  EXPECT_EQ(d.sources["image_size"], "option");
  EXPECT_NE(notes_of(d).find("from --image-size, overriding args.image_size 256"), std::string::npos)
      << notes_of(d);
  opt.image_size = 512;
  d = io::detect_llamagen(tiny_gpt(), "dir/c2i_B_384.pt", opt, args256);
  EXPECT_EQ(d.config["block_size"], 1024);
  EXPECT_NE(notes_of(d).find("overriding args.image_size 256 and 384 from the file name 'c2i_B_384.pt'"),
            std::string::npos)
      << notes_of(d);

  // No args: the file name, as before; {} and null are the same as no args.
  for (const json& none : {json(), json::object()}) {
    d = io::detect_llamagen(tiny_gpt(), "dir/c2i_B_384.pt", {}, none);
    EXPECT_EQ(d.config["block_size"], 576);
    EXPECT_EQ(d.sources["image_size"], "file name");
  }

  // args.downsample_size (8) sets the tokens per side; the option overrides it.
  d = io::detect_llamagen(tiny_gpt(), "m.pt", {}, json{{"image_size", 256}, {"downsample_size", 8}});
  EXPECT_EQ(d.config["block_size"], 1024);
  EXPECT_EQ(d.sources["token_downsample"], "args");
  opt = {};
  opt.token_downsample = 16;
  d = io::detect_llamagen(tiny_gpt(), "m.pt", opt, json{{"image_size", 256}, {"downsample_size", 8}});
  EXPECT_EQ(d.config["block_size"], 256);
  EXPECT_EQ(d.sources["token_downsample"], "option");
  EXPECT_NE(notes_of(d).find("overriding args.downsample_size 8"), std::string::npos) << notes_of(d);

  // Values of the wrong type or range name the field.
  err = error_of([&] { io::detect_llamagen(tiny_gpt(), "m.pt", {}, json{{"image_size", "384"}}); });
  EXPECT_NE(err.find("m.pt: args.image_size is \"384\", expected an integer"), std::string::npos) << err;
  err = error_of([&] { io::detect_llamagen(tiny_gpt(), "m.pt", {}, json{{"image_size", 392}}); });
  EXPECT_NE(err.find("image size 392 (from args.image_size) is not a multiple of the token "
                     "down-sampling 16 (default)"),
            std::string::npos)
      << err;
}

// args that restate the weights must agree with them.
TEST(TorchImportDetect, GPTArgsMustAgreeWithTheWeights) {
  using nlohmann::json;
  auto err_with = [](const io::NamedTensors& t, const json& args) {
    return error_of([&] { io::detect_llamagen(t, "dir/m.pt", {}, args); });
  };
  std::string err = err_with(tiny_gpt(), {{"vocab_size", 100}});
  EXPECT_NE(err.find("dir/m.pt: args.vocab_size is 100 but the weights say 64 "
                     "(tok_embeddings.weight has 64 rows)"),
            std::string::npos)
      << err;
  err = err_with(tiny_gpt(), {{"codebook_size", 16384}});
  EXPECT_NE(err.find("args.codebook_size is 16384 but the weights say 64"), std::string::npos) << err;
  err = err_with(tiny_gpt(), {{"num_classes", 1000}});
  EXPECT_NE(err.find("args.num_classes is 1000 but the weights say 10 "
                     "(cls_embedding.embedding_table.weight has 11 rows"),
            std::string::npos)
      << err;
  err = err_with(tiny_gpt(), {{"cls_token_num", 120}});
  EXPECT_NE(err.find("args.cls_token_num is 120"), std::string::npos) << err;
  err = err_with(tiny_gpt(), {{"gpt_type", "t2i"}});
  EXPECT_NE(err.find("args.gpt_type is 't2i'"), std::string::npos) << err;
  // A preset name with custom shapes, or with another preset's shapes.
  err = err_with(tiny_gpt(), {{"gpt_model", "GPT-B"}});
  EXPECT_NE(err.find("args.gpt_model is GPT-B but the weights (dim 128, 2 layers) are custom sizes "
                     "that match no LlamaGen preset"),
            std::string::npos)
      << err;
  auto gpt_b = tiny_gpt(768, 12, 16384, 1000, /*zero_stride=*/true);
  err = err_with(gpt_b, {{"gpt_model", "GPT-L"}});
  EXPECT_NE(err.find("args.gpt_model is GPT-L but the weights (dim 768, 12 layers) are LlamaGen GPT-B"),
            std::string::npos)
      << err;

  // Consistent args: listed in a note. A LlamaGen name without a preset here is only noted.
  const json good{{"gpt_model", "GPT-B"}, {"vocab_size", 16384}, {"num_classes", 1000},
                  {"cls_token_num", 1},   {"gpt_type", "c2i"},   {"image_size", 384},
                  {"lr", 1e-4},           {"results_dir", "results"}};
  auto d = io::detect_llamagen(gpt_b, "0050000.pt", {}, good);
  EXPECT_EQ(d.preset, "GPT-B");
  EXPECT_EQ(d.config["block_size"], 576);
  EXPECT_NE(notes_of(d).find("args agree with the weights: gpt_model GPT-B, vocab_size 16384, "
                             "num_classes 1000, cls_token_num 1"),
            std::string::npos)
      << notes_of(d);
  d = io::detect_llamagen(tiny_gpt(), "m.pt", {}, json{{"gpt_model", "GPT-7B"}});
  EXPECT_NE(notes_of(d).find("args.gpt_model 'GPT-7B' is a LlamaGen model without a preset here"),
            std::string::npos)
      << notes_of(d);
}

}  // namespace
}  // namespace ctfgen::test
