#include "vm/swap_format.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <cstring>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "test/testing.h"

namespace ptmpfs::vm {
namespace {

// The status's code and that its message says `text`.
::testing::AssertionResult Refused(const absl::Status& status, absl::StatusCode code,
                                   absl::string_view text) {
  if (status.code() == code && absl::StrContains(status.message(), text)) {
    return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure()
         << "got " << status << ", expected " << absl::StatusCodeToString(code) << " saying \""
         << text << "\"";
}

constexpr uint64_t kTenSlotFile = kSwapDataAlign + 10 * kSwapPageSize;

uint64_t LoadLe64(const char* in) {
  uint64_t value = 0;
  for (int i = 7; i >= 0; --i) value = (value << 8) | static_cast<uint8_t>(in[i]);
  return value;
}
void StoreLe64(char* out, uint64_t value) {
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>(value >> (8 * i));
}
void StoreLe32(char* out, uint32_t value) {
  for (int i = 0; i < 4; ++i) out[i] = static_cast<char>(value >> (8 * i));
}
// Recomputes the checksum of an edited encoding, as the format defines it, so that a
// test reaches the check after the checksum.
void Reseal(char* encoded) { StoreLe64(encoded + 136, XXH3_64bits(encoded, 136)); }

class EncodedHeader {
 public:
  EncodedHeader() {
    absl::StatusOr<SwapHeader> header = MakeSwapHeader(kTenSlotFile);
    EXPECT_TRUE(header.ok()) << header.status();
    EncodeSwapHeader(*header, bytes_);
  }
  char* bytes() { return bytes_; }

 private:
  char bytes_[kSwapHeaderBytes];
};

TEST(SwapFormatTest, MakeSwapHeaderFillsSlotsAfterTheAlignedDataOffset) {
  absl::StatusOr<SwapHeader> header = MakeSwapHeader(kTenSlotFile + 100);
  ASSERT_TRUE(header.ok()) << header.status();
  EXPECT_EQ(0, memcmp(header->magic, kSwapMagic, sizeof(kSwapMagic)));
  EXPECT_EQ(header->version, kSwapVersion);
  EXPECT_EQ(header->page_size, kSwapPageSize);
  EXPECT_EQ(header->data_offset, kSwapDataAlign);
  EXPECT_EQ(header->slot_count, 10u);  // the partial last page is left out
  EXPECT_EQ(header->checkpoint_offset, 0u);
  EXPECT_EQ(header->checkpoint_bytes, 0u);
  EXPECT_EQ(header->flags, 0u);
}

TEST(SwapFormatTest, EachHeaderGetsAFreshVersion4Uuid) {
  absl::StatusOr<SwapHeader> first = MakeSwapHeader(kTenSlotFile);
  absl::StatusOr<SwapHeader> second = MakeSwapHeader(kTenSlotFile);
  ASSERT_TRUE(first.ok() && second.ok());
  EXPECT_NE(0, memcmp(first->uuid, second->uuid, sizeof(first->uuid)));
  EXPECT_EQ(first->uuid[6] >> 4, 4);
  EXPECT_EQ(first->uuid[8] >> 6, 2);
}

TEST(SwapFormatTest, MakeSwapHeaderRefusesASizeWithoutRoomForOneSlot) {
  absl::StatusOr<SwapHeader> header = MakeSwapHeader(kSwapDataAlign + kSwapPageSize - 1);
  EXPECT_TRUE(Refused(header.status(), absl::StatusCode::kInvalidArgument, "too small"));
}

TEST(SwapFormatTest, HeaderRoundTripsThroughItsEncoding) {
  absl::StatusOr<SwapHeader> made = MakeSwapHeader(kTenSlotFile);
  ASSERT_TRUE(made.ok());
  char encoded[kSwapHeaderBytes];
  EncodeSwapHeader(*made, encoded);
  absl::StatusOr<SwapHeader> decoded = DecodeSwapHeader(encoded, kTenSlotFile);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(0, memcmp(&*made, &*decoded, sizeof(SwapHeader)));  // no padding in it
}

TEST(SwapFormatTest, EncodingIsLittleEndianAtTheDocumentedOffsets) {
  absl::StatusOr<SwapHeader> made = MakeSwapHeader(kTenSlotFile);
  ASSERT_TRUE(made.ok());
  char encoded[kSwapHeaderBytes];
  EncodeSwapHeader(*made, encoded);
  EXPECT_EQ(0, memcmp(encoded, "PTMPFSSW", 8));
  EXPECT_EQ(encoded[8], 1);  // version, low byte first
  EXPECT_EQ(encoded[12], 0);
  EXPECT_EQ(encoded[13], 0x10);  // 4096 = 0x1000
  EXPECT_EQ(LoadLe64(encoded + 16), 10u);
  EXPECT_EQ(LoadLe64(encoded + 24), kSwapDataAlign);
  EXPECT_EQ(LoadLe64(encoded + 136), XXH3_64bits(encoded, 136));
  for (size_t i = sizeof(SwapHeader); i < kSwapHeaderBytes; ++i) ASSERT_EQ(encoded[i], 0) << i;
}

TEST(SwapFormatTest, DecodeRefusesBadMagicAsNotASwapFile) {
  EncodedHeader header;
  memcpy(header.bytes(), "#!/bin/s", 8);
  absl::StatusOr<SwapHeader> decoded = DecodeSwapHeader(header.bytes(), kTenSlotFile);
  EXPECT_TRUE(
      Refused(decoded.status(), absl::StatusCode::kFailedPrecondition, "not a ptmpfs swap file"));
}

TEST(SwapFormatTest, DecodeRefusesAnUnknownVersion) {
  EncodedHeader header;
  StoreLe32(header.bytes() + 8, 2);
  Reseal(header.bytes());
  absl::StatusOr<SwapHeader> decoded = DecodeSwapHeader(header.bytes(), kTenSlotFile);
  EXPECT_TRUE(Refused(decoded.status(), absl::StatusCode::kFailedPrecondition,
                      "unsupported swap format version 2"));
}

TEST(SwapFormatTest, DecodeRefusesAnotherPageSize) {
  EncodedHeader header;
  StoreLe32(header.bytes() + 12, 16384);
  Reseal(header.bytes());
  absl::StatusOr<SwapHeader> decoded = DecodeSwapHeader(header.bytes(), kTenSlotFile);
  EXPECT_TRUE(Refused(decoded.status(), absl::StatusCode::kFailedPrecondition, "page size 16384"));
}

TEST(SwapFormatTest, DecodeRefusesNonzeroFlags) {
  EncodedHeader header;
  StoreLe64(header.bytes() + 64, 0x4);
  Reseal(header.bytes());
  absl::StatusOr<SwapHeader> decoded = DecodeSwapHeader(header.bytes(), kTenSlotFile);
  EXPECT_TRUE(
      Refused(decoded.status(), absl::StatusCode::kFailedPrecondition, "unknown flags 0x4"));
}

TEST(SwapFormatTest, DecodeRefusesADamagedHeaderByItsChecksum) {
  EncodedHeader header;
  header.bytes()[16] ^= 0x01;  // slot_count, not resealed
  absl::StatusOr<SwapHeader> decoded = DecodeSwapHeader(header.bytes(), kTenSlotFile);
  EXPECT_TRUE(Refused(decoded.status(), absl::StatusCode::kDataLoss, "header checksum mismatch"));
}

TEST(SwapFormatTest, DecodeRefusesNonzeroReservedBytes) {
  EncodedHeader header;
  header.bytes()[100] = 1;
  Reseal(header.bytes());
  absl::StatusOr<SwapHeader> decoded = DecodeSwapHeader(header.bytes(), kTenSlotFile);
  EXPECT_TRUE(Refused(decoded.status(), absl::StatusCode::kDataLoss, "reserved header bytes"));
}

TEST(SwapFormatTest, DecodeRefusesADataOffsetOffTheMegabyte) {
  EncodedHeader header;
  StoreLe64(header.bytes() + 24, kSwapDataAlign + kSwapPageSize);
  Reseal(header.bytes());
  absl::StatusOr<SwapHeader> decoded = DecodeSwapHeader(header.bytes(), kTenSlotFile * 2);
  EXPECT_TRUE(Refused(decoded.status(), absl::StatusCode::kDataLoss, "data_offset"));
}

TEST(SwapFormatTest, DecodeRefusesAFileShorterThanItsGeometry) {
  EncodedHeader header;
  absl::StatusOr<SwapHeader> decoded = DecodeSwapHeader(header.bytes(), kTenSlotFile - 1);
  EXPECT_TRUE(Refused(decoded.status(), absl::StatusCode::kDataLoss,
                      absl::StrCat("truncated: the file is ", kTenSlotFile - 1,
                                   " bytes, but its header describes ", kTenSlotFile)));
}

TEST(SwapFormatTest, DecodeAcceptsAFileLongerThanItsGeometry) {
  EncodedHeader header;
  absl::StatusOr<SwapHeader> decoded = DecodeSwapHeader(header.bytes(), kTenSlotFile + 12345);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->slot_count, 10u);
}

TEST(SwapFormatTest, FormatSwapFileWritesTheHeaderAndAllocatesEveryBlock) {
  testing::TempDir dir;
  const std::string path = dir.path() + "/swap";
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  absl::StatusOr<SwapHeader> formatted = FormatSwapFile(fd, kTenSlotFile);
  ASSERT_TRUE(formatted.ok()) << formatted.status();
  struct stat st;
  ASSERT_EQ(fstat(fd, &st), 0);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), kTenSlotFile);
  EXPECT_GE(static_cast<uint64_t>(st.st_blocks) * 512, kTenSlotFile);
  absl::StatusOr<SwapHeader> read = ReadSwapHeader(fd);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(0, memcmp(&*formatted, &*read, sizeof(SwapHeader)));
  close(fd);
}

TEST(SwapFormatTest, FormatSwapFileShrinksALongerFileToItsGeometry) {
  testing::TempDir dir;
  const std::string path = dir.path() + "/swap";
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(ftruncate(fd, 3 * kTenSlotFile), 0);
  ASSERT_TRUE(FormatSwapFile(fd, kTenSlotFile).ok());
  struct stat st;
  ASSERT_EQ(fstat(fd, &st), 0);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), kTenSlotFile);
  close(fd);
}

TEST(SwapFormatTest, ReadSwapHeaderCallsAShortForeignFileNotASwapFile) {
  testing::TempDir dir;
  const std::string path = dir.path() + "/notes.txt";
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(write(fd, "hello\n", 6), 6);
  absl::StatusOr<SwapHeader> read = ReadSwapHeader(fd);
  EXPECT_TRUE(
      Refused(read.status(), absl::StatusCode::kFailedPrecondition, "not a ptmpfs swap file"));
  close(fd);
}

}  // namespace
}  // namespace ptmpfs::vm
