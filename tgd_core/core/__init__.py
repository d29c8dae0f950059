"""What every part of the engine shares: errors (:mod:`.errors`), where files live
(:mod:`.paths`), devices (:mod:`.devices`), crash-safe writes and fault points (:mod:`.fileio`)
and the validation helpers that turn bad values into one-line errors (:mod:`.validation`)."""
