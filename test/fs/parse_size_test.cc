// parse_size_test: the size parser that ptmpfs's options and mkfs.ptmpfs share.
#include "fs/parse_size.h"

#include <cstdint>
#include <string>

#include "gtest/gtest.h"

namespace ptmpfs::fs {
namespace {

constexpr uint64_t kRam = uint64_t{8} << 30;

TEST(ParseSizeTest, PlainNumbersAreBytes) {
  EXPECT_EQ(*ParseSize("size", "0", kRam), 0u);
  EXPECT_EQ(*ParseSize("size", "4096", kRam), 4096u);
  EXPECT_EQ(*ParseSize("size", "18446744073709551615", kRam), UINT64_MAX);
}

TEST(ParseSizeTest, SuffixesArePowersOf1024InEitherCase) {
  EXPECT_EQ(*ParseSize("size", "3k", kRam), 3u << 10);
  EXPECT_EQ(*ParseSize("size", "3K", kRam), 3u << 10);
  EXPECT_EQ(*ParseSize("size", "64m", kRam), uint64_t{64} << 20);
  EXPECT_EQ(*ParseSize("size", "64M", kRam), uint64_t{64} << 20);
  EXPECT_EQ(*ParseSize("size", "2g", kRam), uint64_t{2} << 30);
  EXPECT_EQ(*ParseSize("size", "2G", kRam), uint64_t{2} << 30);
  EXPECT_EQ(*ParseSize("size", "5t", kRam), uint64_t{5} << 40);
  EXPECT_EQ(*ParseSize("size", "5T", kRam), uint64_t{5} << 40);
}

TEST(ParseSizeTest, PercentIsOfRamAndOnlyWhereRamIsGiven) {
  EXPECT_EQ(*ParseSize("size", "50%", kRam), kRam / 2);
  EXPECT_EQ(*ParseSize("size", "0%", kRam), 0u);
  EXPECT_EQ(*ParseSize("size", "10000%", kRam), kRam * 100);
  EXPECT_EQ(*ParseSize("size", "1%", 1000), 10u);
  absl::StatusOr<uint64_t> too_much = ParseSize("size", "10001%", kRam);
  EXPECT_FALSE(too_much.ok());
  // 0 RAM: % is not a size here (mkfs.ptmpfs, nr_inodes=).
  absl::StatusOr<uint64_t> refused = ParseSize("size", "50%", 0);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("%"), std::string::npos);
  // Huge RAM times 10000% does not wrap.
  EXPECT_FALSE(ParseSize("size", "10000%", UINT64_MAX / 2).ok());
}

TEST(ParseSizeTest, MalformedSizesAreRefusedNamingWhatAndText) {
  for (const char* text : {"", "k", "%", "12q", "-5", "+5", " 5", "5 ", "1.5g", "5kb", "0x10",
                           "lots", "5kk", "18446744073709551616", "16777216t"}) {
    absl::StatusOr<uint64_t> parsed = ParseSize("ram", text, kRam);
    ASSERT_FALSE(parsed.ok()) << "'" << text << "' parsed as " << *parsed;
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(parsed.status().message().find(std::string("ram=") + text), std::string::npos)
        << parsed.status();
  }
}

}  // namespace
}  // namespace ptmpfs::fs
