//! TODO(helper): thunderbird renderer
