#include "common/config_reader.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

namespace peco {
namespace {

using ::testing::HasSubstr;

ConfigReader MustParse(const std::string& text, const std::string& source = "test.yaml") {
  absl::StatusOr<ConfigReader> reader = ConfigReader::FromString(text, source);
  EXPECT_TRUE(reader.ok()) << reader.status();
  return reader.ok() ? *std::move(reader) : ConfigReader();
}

TEST(ConfigReaderTest, ReadsTypedValues) {
  ConfigReader r = MustParse(
      "i64: 12345678901\n"
      "i: -7\n"
      "d: 2.5e-3\n"
      "b: true\n"
      "s: hello world\n"
      "li64: [1, 2, 30000000000]\n"
      "li: [4, 5]\n"
      "ld: [0.5, 1, -2.25]\n");
  int64_t i64 = 0;
  int i = 0;
  double d = 0;
  bool b = false;
  std::string s;
  std::vector<int64_t> li64;
  std::vector<int> li;
  std::vector<double> ld;
  ASSERT_TRUE(r.Read("i64", &i64).ok());
  ASSERT_TRUE(r.Read("i", &i).ok());
  ASSERT_TRUE(r.Read("d", &d).ok());
  ASSERT_TRUE(r.Read("b", &b).ok());
  ASSERT_TRUE(r.Read("s", &s).ok());
  ASSERT_TRUE(r.Read("li64", &li64).ok());
  ASSERT_TRUE(r.Read("li", &li).ok());
  ASSERT_TRUE(r.Read("ld", &ld).ok());
  EXPECT_EQ(i64, 12345678901LL);
  EXPECT_EQ(i, -7);
  EXPECT_DOUBLE_EQ(d, 2.5e-3);
  EXPECT_TRUE(b);
  EXPECT_EQ(s, "hello world");
  EXPECT_EQ(li64, (std::vector<int64_t>{1, 2, 30000000000LL}));
  EXPECT_EQ(li, (std::vector<int>{4, 5}));
  EXPECT_EQ(ld, (std::vector<double>{0.5, 1.0, -2.25}));
  EXPECT_TRUE(r.Finish().ok()) << r.Finish();
}

TEST(ConfigReaderTest, AbsentAndNullKeysKeepDefaults) {
  ConfigReader r = MustParse("present: 3\nnothing: ~\n");
  int missing = 42;
  std::string name = "default";
  std::vector<int> list = {1, 2};
  double nothing = 9.5;
  EXPECT_TRUE(r.Read("missing", &missing).ok());
  EXPECT_TRUE(r.Read("name", &name).ok());
  EXPECT_TRUE(r.Read("list", &list).ok());
  EXPECT_TRUE(r.Read("nothing", &nothing).ok());
  EXPECT_EQ(missing, 42);
  EXPECT_EQ(name, "default");
  EXPECT_EQ(list, (std::vector<int>{1, 2}));
  EXPECT_EQ(nothing, 9.5);
  EXPECT_TRUE(r.Has("present"));
  EXPECT_FALSE(r.Has("missing"));
  // "present" was never read.
  absl::Status finish = r.Finish();
  EXPECT_EQ(finish.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(finish.message(), HasSubstr("present"));
}

TEST(ConfigReaderTest, EmptyDocumentIsAnEmptyMapping) {
  ConfigReader r = MustParse("");
  int value = 5;
  EXPECT_TRUE(r.Read("x", &value).ok());
  EXPECT_EQ(value, 5);
  EXPECT_TRUE(r.Finish().ok());
}

TEST(ConfigReaderTest, WrongTypeNamesDottedPath) {
  ConfigReader root = MustParse("model:\n  ch_mult: [1, two, 2]\n  ch: 3.5\n  name: [a]\n");
  absl::StatusOr<ConfigReader> model = root.Child("model");
  ASSERT_TRUE(model.ok()) << model.status();
  std::vector<int> ch_mult = {7};
  absl::Status s = model->Read("ch_mult", &ch_mult);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("model.ch_mult: expected a list of integers"));
  EXPECT_THAT(s.message(), HasSubstr("test.yaml"));
  EXPECT_EQ(ch_mult, (std::vector<int>{7})) << "a failed read must not change the output";

  int ch = 1;
  s = model->Read("ch", &ch);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("model.ch: expected an integer"));

  std::string name;
  s = model->Read("name", &name);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("model.name: expected a string"));
}

TEST(ConfigReaderTest, StringsWithNulOrControlCharactersAreRefused) {
  // A NUL inside a quoted YAML string would cut a path short where C code reads it (escaping an
  // allowed root); a newline or escape would forge lines of logs and file lists.
  for (const char* text : {"path: \"/data/ok\\0/../../etc\"\n", "path: \"a\\nb\"\n",
                           "path: \"a\\tb\"\n", "path: \"\\x1b[31m\"\n", "path: \"a\\x7fb\"\n"}) {
    ConfigReader root = MustParse(text);
    std::string path = "kept";
    absl::Status s = root.Read("path", &path);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << text;
    EXPECT_THAT(s.message(), HasSubstr("path: expected a string without control characters"));
    EXPECT_EQ(path, "kept") << text;
  }
  ConfigReader fine = MustParse("path: \"/data/fashion mnist/é\"\n");
  std::string path;
  ASSERT_TRUE(fine.Read("path", &path).ok());
  EXPECT_EQ(path, "/data/fashion mnist/\u00e9");
}

TEST(ConfigReaderTest, ScalarWhereListExpectedAndListWhereScalarExpected) {
  ConfigReader r = MustParse("a: 3\nb: [1]\nc: yes please\n");
  std::vector<double> a;
  absl::Status s = r.Read("a", &a);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("a: expected a list of numbers"));
  double b = 0;
  s = r.Read("b", &b);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("b: expected a number"));
  bool c = false;
  s = r.Read("c", &c);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("c: expected true or false"));
}

TEST(ConfigReaderTest, IntegerOverflowIsATypeError) {
  ConfigReader r = MustParse("n: 99999999999\n");
  int n = 0;
  absl::Status s = r.Read("n", &n);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("n: expected an integer"));
}

TEST(ConfigReaderTest, FinishNamesUnknownNestedField) {
  ConfigReader root = MustParse("section:\n  known: 1\n  misspeled: 2\n");
  absl::StatusOr<ConfigReader> section = root.Child("section");
  ASSERT_TRUE(section.ok());
  int known = 0;
  ASSERT_TRUE(section->Read("known", &known).ok());
  EXPECT_EQ(known, 1);
  absl::Status s = section->Finish();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("section.misspeled"));
  EXPECT_THAT(s.message(), HasSubstr("unknown field"));
  EXPECT_THAT(s.message(), HasSubstr("known"));
  // The root consumed "section" through Child, so it is complete.
  EXPECT_TRUE(root.Finish().ok()) << root.Finish();
}

// Found by fuzz/config_reader_fuzzer.cc: Finish() converted every key to a string, which throws
// for a key that is a list, a mapping or null, and the exception ended peco-train.
TEST(ConfigReaderTest, FinishReportsKeysThatAreNotStrings) {
  for (const char* text : {"? [a, b]\n: 1\n", "~: 1\n", "? {x: 1}\n: 1\n"}) {
    ConfigReader root = MustParse(text);
    absl::Status s = root.Finish();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << text;
    EXPECT_THAT(s.message(), HasSubstr("test.yaml: unknown field whose key is not a string"));
  }
  ConfigReader root = MustParse("model: {ch: 1, ? [x] : 2}\n");
  absl::StatusOr<ConfigReader> model = root.Child("model");
  ASSERT_TRUE(model.ok());
  int ch = 0;
  ASSERT_TRUE(model->Read("ch", &ch).ok());
  absl::Status s = model->Finish();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("model: unknown field whose key is not a string"));
  EXPECT_THAT(s.message(), HasSubstr("known fields here: ch"));
}

TEST(ConfigReaderTest, ReadingAbsentKeyDoesNotCreateIt) {
  ConfigReader r = MustParse("a: 1\n");
  int b = 0;
  ASSERT_TRUE(r.Read("b", &b).ok());
  EXPECT_FALSE(r.Has("b"));
  int a = 0;
  ASSERT_TRUE(r.Read("a", &a).ok());
  EXPECT_TRUE(r.Finish().ok());
}

TEST(ConfigReaderTest, HasScalarTellsAWordFromAMappingOrAList) {
  ConfigReader r = MustParse("word: pixels\nnumber: 3\nmap: {a: 1}\nlist: [1]\nnull_value: ~\n");
  EXPECT_TRUE(r.HasScalar("word"));
  EXPECT_TRUE(r.HasScalar("number"));
  EXPECT_FALSE(r.HasScalar("map"));
  EXPECT_FALSE(r.HasScalar("list"));
  EXPECT_FALSE(r.HasScalar("null_value"));
  EXPECT_FALSE(r.HasScalar("absent"));
}

TEST(ConfigReaderTest, ReadEnum) {
  ConfigReader r = MustParse("good: bf16\nbad: fp16\n");
  std::string good = "fp32";
  ASSERT_TRUE(r.ReadEnum("good", {"fp32", "bf16"}, &good).ok());
  EXPECT_EQ(good, "bf16");
  std::string bad = "fp32";
  absl::Status s = r.ReadEnum("bad", {"fp32", "bf16"}, &bad);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("bad: expected one of fp32, bf16"));
  EXPECT_THAT(s.message(), HasSubstr("fp16"));
  EXPECT_EQ(bad, "fp32");
  std::string absent = "fp32";
  EXPECT_TRUE(r.ReadEnum("absent", {"fp32", "bf16"}, &absent).ok());
  EXPECT_EQ(absent, "fp32");
}

TEST(ConfigReaderTest, ChildOfScalarOrListIsAnError) {
  ConfigReader r = MustParse("scalar: 3\nlist: [1, 2]\n");
  absl::StatusOr<ConfigReader> child = r.Child("scalar");
  EXPECT_EQ(child.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(child.status().message(), HasSubstr("scalar: expected a mapping"));
  child = r.Child("list");
  EXPECT_EQ(child.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(child.status().message(), HasSubstr("list: expected a mapping"));
}

TEST(ConfigReaderTest, AbsentChildIsEmptyWithNestedPrefix) {
  ConfigReader r = MustParse("a: 1\n");
  absl::StatusOr<ConfigReader> child = r.Child("loss");
  ASSERT_TRUE(child.ok()) << child.status();
  absl::StatusOr<ConfigReader> grandchild = child->Child("gan");
  ASSERT_TRUE(grandchild.ok());
  EXPECT_EQ(grandchild->PathOf("disc_weight"), "loss.gan.disc_weight");
  double w = 0.8;
  EXPECT_TRUE(grandchild->Read("disc_weight", &w).ok());
  EXPECT_EQ(w, 0.8);
  EXPECT_TRUE(grandchild->Finish().ok());
}

TEST(ConfigReaderTest, InvalidYamlNamesSource) {
  absl::StatusOr<ConfigReader> r = ConfigReader::FromString("a: [1, 2\nb: }", "bad_config.yaml");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("bad_config.yaml"));
  EXPECT_THAT(r.status().message(), HasSubstr("not valid YAML"));
}

TEST(ConfigReaderTest, NonMappingRootIsAnError) {
  absl::StatusOr<ConfigReader> r = ConfigReader::FromString("- 1\n- 2\n", "list.yaml");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("list.yaml"));
  EXPECT_THAT(r.status().message(), HasSubstr("mapping"));
}

TEST(ConfigReaderTest, FromFileMissingIsNotFound) {
  absl::StatusOr<ConfigReader> r = ConfigReader::FromFile("/nonexistent/peco/config.yaml");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(r.status().message(), HasSubstr("/nonexistent/peco/config.yaml"));
}

TEST(ConfigReaderTest, OverridesSetNestedValuesAndLeaveTheTextAloneWithoutAny) {
  const std::string text = "a: {b: 1}  # comment\n";
  absl::StatusOr<std::string> same = ApplyConfigOverrides(text, {});
  ASSERT_TRUE(same.ok()) << same.status();
  EXPECT_EQ(*same, text);
  absl::StatusOr<std::string> set = ApplyConfigOverrides(text, {"a.c.d=[1, 2]", "e=x"});
  ASSERT_TRUE(set.ok()) << set.status();
  ConfigReader r = MustParse(*set);
  absl::StatusOr<ConfigReader> a = r.Child("a");
  ASSERT_TRUE(a.ok());
  absl::StatusOr<ConfigReader> c = a->Child("c");
  ASSERT_TRUE(c.ok());
  std::vector<int> d;
  ASSERT_TRUE(c->Read("d", &d).ok());
  EXPECT_EQ(d, (std::vector<int>{1, 2}));
}

// Found by fuzz/config_reader_fuzzer.cc: an override on a scalar document threw out of yaml-cpp
// (the trainer's validator applies overrides to a submitted config before reading it), and one on
// a list turned the list into a mapping.
TEST(ConfigReaderTest, OverridesRefuseADocumentThatIsNotAMapping) {
  for (const char* text : {"just text\n", "- a\n- b\n"}) {
    absl::StatusOr<std::string> result = ApplyConfigOverrides(text, {"a=1"});
    EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument) << text;
    EXPECT_THAT(result.status().message(), HasSubstr("expected a mapping at the top")) << text;
  }
  absl::StatusOr<std::string> empty = ApplyConfigOverrides("", {"a=1"});
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_TRUE(MustParse(*empty).Has("a"));
}

// Found by fuzz/config_reader_fuzzer.cc: a long override path built a document nested deeper than
// yaml-cpp reads back, so the CLI's re-parse of it threw.
TEST(ConfigReaderTest, OverridesThatNestTooDeeplyToReadBackAreRefused) {
  std::string path;
  for (int i = 0; i < 520; ++i) path += "a.";
  absl::StatusOr<std::string> deep = ApplyConfigOverrides("x: 1\n", {path + "b=1"});
  EXPECT_EQ(deep.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(deep.status().message(), HasSubstr("cannot be read back"));

  absl::StatusOr<std::string> fine = ApplyConfigOverrides("x: 1\n", {path.substr(0, 40) + "b=1"});
  ASSERT_TRUE(fine.ok()) << fine.status();
  EXPECT_TRUE(MustParse(*fine).Has("a"));
}

// Found by fuzz/config_reader_fuzzer.cc: yaml-cpp read a value starting "\x01\0\0\0" as UTF-32,
// so the document held something other than the override's text.
TEST(ConfigReaderTest, OverridesWithANulByteAreRefused) {
  const std::string item = "a.b=" + std::string("\x01\0\0\0\x01\x02", 6) + "5x";
  absl::StatusOr<std::string> result = ApplyConfigOverrides("kind: tokenizer\n", {item});
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(result.status().message(), HasSubstr("--set a.b=\\001\\000"));
  EXPECT_THAT(result.status().message(), HasSubstr("holds a NUL byte"));
}

TEST(ConfigReaderTest, RangeHelpers) {
  EXPECT_TRUE(ExpectPositive("x", 1e-9).ok());
  absl::Status s = ExpectPositive("optim.lr", 0);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("optim.lr"));
  EXPECT_TRUE(ExpectNonNegative("x", 0).ok());
  s = ExpectNonNegative("loss.w", -0.5);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("loss.w"));
  EXPECT_TRUE(ExpectInRange("x", 1, 1, 2).ok());
  EXPECT_TRUE(ExpectInRange("x", 2, 1, 2).ok());
  s = ExpectInRange("beta", 2.5, 1, 2);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("beta"));
}

}  // namespace
}  // namespace peco
