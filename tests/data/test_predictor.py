from lightning_nas.data.predictor import PredictorDataModule


def test_folds_are_drawn_within_each_level_and_training_may_skip_levels():
    records = [{"cell": [b, i], "accuracy": i / 10, "b": b} for b, count in ((1, 10), (2, 4)) for i in range(count)]
    data = PredictorDataModule(records, lambda cell: [1, 2, 3, 4][: 2 * cell[0]], num_folds=5)
    folds = [fold for _, _, fold in data.samples]
    assert sorted(folds[:10]) == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]  # level 1 alone fills every fold evenly
    assert len(set(folds[10:])) == 4  # level 2's four results land in four different folds
    # a later level does not move an earlier result to another fold
    assert [f for _, _, f in PredictorDataModule(records[:10], lambda c: [1, 2], num_folds=5).samples] == folds[:10]
    newest = PredictorDataModule(records, lambda cell: [1, 2, 3, 4][: 2 * cell[0]], num_folds=5, train_levels={2})
    assert [len(tokens) for tokens, _, _ in newest.trained] == [4] * 4
    assert next(iter(newest.val_dataloader()))["tokens"].shape[0] == 14
