"""The warnings eval gives about a model that has not learned."""

from imdb_rnn.scoring import chance_warning, one_class_warning


def test_a_model_at_chance_is_flagged_whatever_it_predicts():
    # The tutorial recipe scores 0.565 with a ROC-AUC of 0.536 and predicts both classes: the
    # one-class warning misses it, the chance warning does not.
    assert one_class_warning(0.47) is None
    assert "ROC-AUC is 0.536, about chance" in chance_warning(0.536)
    assert "about chance" in chance_warning(0.47)
    assert chance_warning(0.6) is None and chance_warning(0.93) is None and chance_warning(None) is None
