//! TODO(helper): dns renderer
