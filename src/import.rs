//! TODO(helper): import
