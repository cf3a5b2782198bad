#include "meta/xattr.h"

#include <memory>
#include <string>

#include "gtest/gtest.h"
#include "meta/kmem.h"
#include "vm/address_space.h"
#include "vm/pager.h"
#include "vm/vm.h"

namespace ptmpfs::meta {
namespace {

class XattrTest : public ::testing::Test {
 protected:
  void SetUp() override {
    vm::VmOptions options;
    options.ram_bytes = 256 * vm::kPageSize;
    options.swap.size_bytes = 64 << 20;
    vm_ = *vm::Vm::Create(options);
    space_ = *vm::Map::CreateAddressSpace(*vm_, uint64_t{1} << 32, uint64_t{1} << 46);
    kmem_ = *Kmem::Create(*space_);
    xattrs_ = std::make_unique<Xattrs>(*kmem_);
  }
  void TearDown() override {
    xattrs_->FreeAll(block_);
    xattrs_.reset();
    kmem_.reset();
    space_.reset();
    vm_.reset();
  }
  std::string Get(absl::string_view name) {
    absl::StatusOr<size_t> size = xattrs_->Get(block_, name, nullptr, 0);
    if (!size.ok()) return "<" + std::string(size.status().message()) + ">";
    std::string value(*size, '\0');
    EXPECT_TRUE(xattrs_->Get(block_, name, value.data(), value.size()).ok());
    return value;
  }

  std::unique_ptr<vm::Vm> vm_;
  std::unique_ptr<vm::Map> space_;
  std::unique_ptr<Kmem> kmem_;
  std::unique_ptr<Xattrs> xattrs_;
  XattrBlock block_;
};

TEST_F(XattrTest, SetGetReplaceAndRemove) {
  ASSERT_TRUE(xattrs_->Set(block_, "user.a", "one", Xattrs::SetMode::kAny).ok());
  ASSERT_TRUE(xattrs_->Set(block_, "user.b", "two", Xattrs::SetMode::kAny).ok());
  EXPECT_EQ(Get("user.a"), "one");
  ASSERT_TRUE(xattrs_->Set(block_, "user.a", "uno", Xattrs::SetMode::kReplace).ok());
  EXPECT_EQ(Get("user.a"), "uno");
  EXPECT_EQ(Get("user.b"), "two");
  ASSERT_TRUE(xattrs_->Remove(block_, "user.a").ok());
  EXPECT_EQ(xattrs_->Get(block_, "user.a", nullptr, 0).status().code(),
            absl::StatusCode::kNotFound);
  ASSERT_TRUE(xattrs_->Remove(block_, "user.b").ok());
  EXPECT_EQ(block_.address, kNullAddr);  // an empty set holds no blob
}

TEST_F(XattrTest, CreateAndReplaceFlagsAreHonoured) {
  EXPECT_EQ(xattrs_->Set(block_, "user.x", "v", Xattrs::SetMode::kReplace).code(),
            absl::StatusCode::kNotFound);
  ASSERT_TRUE(xattrs_->Set(block_, "user.x", "v", Xattrs::SetMode::kCreate).ok());
  EXPECT_EQ(xattrs_->Set(block_, "user.x", "w", Xattrs::SetMode::kCreate).code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(Get("user.x"), "v");
}

TEST_F(XattrTest, ListGivesNulSeparatedNamesAndRangeErrors) {
  ASSERT_TRUE(xattrs_->Set(block_, "user.one", "1", Xattrs::SetMode::kAny).ok());
  ASSERT_TRUE(xattrs_->Set(block_, "trusted.two", "2", Xattrs::SetMode::kAny).ok());
  absl::StatusOr<size_t> size = xattrs_->List(block_, nullptr, 0);
  ASSERT_TRUE(size.ok());
  std::string names(*size, '\0');
  ASSERT_TRUE(xattrs_->List(block_, names.data(), names.size()).ok());
  EXPECT_EQ(names, std::string("user.one\0trusted.two\0", 21));
  char small[4];
  EXPECT_EQ(xattrs_->List(block_, small, sizeof small).status().code(),
            absl::StatusCode::kOutOfRange);
  EXPECT_EQ(xattrs_->Get(block_, "user.one", small, 0).value(), 1u);
}

TEST_F(XattrTest, LimitsOnNamesAndValues) {
  EXPECT_EQ(xattrs_->Set(block_, std::string(256, 'n'), "v", Xattrs::SetMode::kAny).code(),
            absl::StatusCode::kOutOfRange);
  EXPECT_EQ(
      xattrs_->Set(block_, "user.big", std::string((64 << 10) + 1, 'v'), Xattrs::SetMode::kAny)
          .code(),
      absl::StatusCode::kFailedPrecondition);
  const std::string largest((64 << 10), 'v');
  ASSERT_TRUE(xattrs_->Set(block_, std::string(255, 'n'), largest, Xattrs::SetMode::kAny).ok());
  EXPECT_EQ(Get(std::string(255, 'n')), largest);
  EXPECT_TRUE(xattrs_->Set(block_, "user.empty", "", Xattrs::SetMode::kAny).ok());
  EXPECT_EQ(Get("user.empty"), "");
}

TEST_F(XattrTest, ValuesSurviveEvictionToSwap) {
  for (int i = 0; i < 50; ++i) {
    ASSERT_TRUE(xattrs_
                    ->Set(block_, "user.k" + std::to_string(i), std::string(1000 + i, 'a' + i % 26),
                          Xattrs::SetMode::kAny)
                    .ok());
  }
  vm_->pager().Reclaim(1024);
  for (int i = 0; i < 50; ++i) {
    EXPECT_EQ(Get("user.k" + std::to_string(i)), std::string(1000 + i, 'a' + i % 26));
  }
}

TEST_F(XattrTest, RepeatedSetAndFreeDoesNotLeak) {
  ASSERT_TRUE(xattrs_->Set(block_, "user.a", std::string(40000, 'x'), Xattrs::SetMode::kAny).ok());
  xattrs_->FreeAll(block_);
  EXPECT_EQ(block_.address, kNullAddr);
  const uint64_t charged = vm_->accounting().charged();
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(
        xattrs_->Set(block_, "user.a", std::string(40000, 'x'), Xattrs::SetMode::kAny).ok());
    ASSERT_TRUE(xattrs_->Set(block_, "user.b", "small", Xattrs::SetMode::kAny).ok());
    xattrs_->FreeAll(block_);
  }
  // Empty pool pages are kept a little while before they go back: allow a few.
  EXPECT_LE(vm_->accounting().charged(), charged + 16);
}

}  // namespace
}  // namespace ptmpfs::meta
